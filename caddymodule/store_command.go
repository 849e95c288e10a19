package caddymodule

import "github.com/spf13/cobra"

// storeSubcommands are the `caddy onepush store …` commands; each lives in
// the file of the store feature it serves and adds itself here from init.
var storeSubcommands []func() *cobra.Command

func storeCommand() *cobra.Command {
	s := &cobra.Command{Use: "store", Short: "Creates, backs up, restores and maintains the onepush store"}
	for _, sub := range storeSubcommands {
		s.AddCommand(sub())
	}
	return s
}
