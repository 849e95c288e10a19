package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/onepush/onepush/pushauth"
)

// Dual control from the command line: the requests other operators made,
// approved or rejected by a supervisor (ONEPUSH_ADMIN_TOKEN is your own
// operator token).

func requestsCommand() *cobra.Command {
	r := &cobra.Command{Use: "requests", Short: "Lists, approves or rejects admin changes waiting for a second operator (dual control)"}
	decide := func(decision, short string) *cobra.Command {
		return quiet(&cobra.Command{
			Use: decision + " ID", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				cl, err := newAdminClient(c)
				if err != nil {
					return err
				}
				out, err := cl.do(http.MethodPost, "/requests/"+url.PathEscape(args[0])+"/"+decision, nil, nil)
				if err != nil {
					return err
				}
				if decision == "collect" {
					return printCode(c, out)
				}
				var req pushauth.AdminRequest
				if printed, err := printOrDecode(c, out, &req); printed || err != nil {
					return err
				}
				printRequest(c, &req)
				return nil
			},
		})
	}
	r.AddCommand(
		quiet(&cobra.Command{
			Use: "list", Short: "Lists the requests kept, newest first", Args: cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				cl, err := newAdminClient(c)
				if err != nil {
					return err
				}
				out, err := cl.do(http.MethodGet, "/requests", nil, nil)
				if err != nil {
					return err
				}
				var res struct {
					Requests []*pushauth.AdminRequest `json:"requests"`
				}
				if printed, err := printOrDecode(c, out, &res); printed || err != nil {
					return err
				}
				for _, req := range res.Requests {
					printRequest(c, req)
				}
				return nil
			},
		}),
		decide("approve", "Approves another operator's request (supervisors); the change runs at once"),
		decide("reject", "Rejects another operator's request (supervisors)"),
		decide("collect", "Shows the activation code of your own approved request, once"),
	)
	return r
}

func printRequest(c *cobra.Command, r *pushauth.AdminRequest) {
	fmt.Fprintf(c.OutOrStdout(), "%s  %-9s %-16s user=%q by=%s at=%s expires=%s", r.ID, r.Status, r.Op, r.User, r.RequestedBy,
		r.RequestedAt.UTC().Format(time.RFC3339), r.ExpiresAt.UTC().Format(time.RFC3339))
	if r.CredentialID != "" {
		fmt.Fprintf(c.OutOrStdout(), " credential=%s", r.CredentialID)
	}
	if r.DecidedBy != "" {
		fmt.Fprintf(c.OutOrStdout(), " decided_by=%s", r.DecidedBy)
	}
	if r.Result != "" {
		fmt.Fprintf(c.OutOrStdout(), " result=%q", r.Result)
	}
	fmt.Fprintln(c.OutOrStdout())
}

// printPending tells the operator that their change waits for a
// supervisor, when the admin API answered so.
func printPending(c *cobra.Command, out []byte) bool {
	var p struct {
		RequestID string    `json:"request_id"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if json.Unmarshal(out, &p) != nil || p.RequestID == "" {
		return false
	}
	if asJSON, _ := c.Flags().GetBool("json"); asJSON {
		_, _ = c.OutOrStdout().Write(out)
		return true
	}
	fmt.Fprintf(c.OutOrStdout(), "request %s waits for a supervisor until %s:\n  caddy onepush requests approve %s\n",
		p.RequestID, p.ExpiresAt.UTC().Format(time.RFC3339), p.RequestID)
	return true
}
