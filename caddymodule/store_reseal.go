package caddymodule

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	redisstore "github.com/onepush/onepush/pushauth/store/redis"
)

func init() {
	storeSubcommands = append(storeSubcommands, resealCommand)
}

// resealCommand is `caddy onepush store reseal`: after an upgrade from a
// version that kept secrets in clear, and after adding a new
// encryption_key, it rewrites every record under the current key, beside
// the running gateways.
func resealCommand() *cobra.Command {
	c := quiet(&cobra.Command{
		Use:   "reseal --config FILE",
		Short: "Seals records kept in clear by an earlier version and reseals records under the current encryption_key",
		Long: `
Reads the store and the keys (encryption_key, previous_encryption_keys)
from the gateway's config and rewrites, under the current encryption_key,
every record an earlier version wrote in clear and every record sealed
under a previous key. Run it once every gateway runs the new version or
the new key; the gateways may keep serving meanwhile. Afterwards the
previous keys can be dropped from the config.

Records are also resealed when a gateway first reads them; this command
reaches the ones nobody reads (credentials of idle users).

Then the primary rewrites its append-only file (BGREWRITEAOF; BGSAVE when
appendonly is off) and the command waits until that has finished, since
the file still held the commands that wrote the records in clear or under
the old key. Replicas and backups are not rewritten: run BGREWRITEAOF on
each replica, and destroy or rewrite the backups taken before.
`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			file, _ := c.Flags().GetString("config")
			adapter, _ := c.Flags().GetString("adapter")
			if file == "" {
				return errors.New("--config is required: the config names the store and its keys")
			}
			app, err := configuredApp(file, adapter)
			if err != nil {
				return err
			}
			if typ := storeTypeOf(app); typ != "redis" {
				return fmt.Errorf("store %s: nothing to reseal (only the redis store keeps sealed records outside the process)", typ)
			}
			opened, _, err := app.openStore(c.Context(), cliLogger(c))
			if err != nil {
				return err
			}
			defer opened.Close()
			store := opened.(*redisstore.Store)
			scanned, resealed, err := store.Reseal(c.Context())
			fmt.Fprintf(c.OutOrStdout(), "store reseal: %d records read, %d resealed under the current encryption_key\n", scanned, resealed)
			if err == nil {
				fmt.Fprintln(c.OutOrStdout(), "store reseal: the primary (each primary on Cluster) rewrote its persistence file (BGREWRITEAOF; BGSAVE where appendonly is off) and it finished: it no longer holds the records as they were before. Replicas keep theirs: run BGREWRITEAOF (or BGSAVE) on each replica; destroy or rewrite RDB/AOF backups taken before the reseal.")
			}
			return err
		},
	})
	c.Flags().StringP("config", "c", "", "the gateway's config file (Caddyfile or JSON)")
	c.Flags().StringP("adapter", "a", "", "config adapter (default: by file name, as caddy run)")
	return c
}
