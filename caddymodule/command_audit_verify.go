package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/store/embedded"
)

// auditVerifyCommand walks the audit hash chain: through the admin API of
// a running gateway, or offline in the store its config names.
func auditVerifyCommand() *cobra.Command {
	return quiet(configFlags(&cobra.Command{
		Use:   "verify",
		Short: "Verifies the audit trail's hash chain and names the first break",
		Long: `Walks the audit trail's hash chain (each event carries the SHA-256 of the
previous one) and names the first event found changed, removed or
reordered; exits 1 then, 0 when the chain holds.

With --config it reads the store the config names itself: the Redis store
at any time, the embedded store's file only while Caddy is stopped (Caddy
holds its lock). Without --config it asks the running gateway's admin API
(--admin, ONEPUSH_ADMIN_TOKEN).

The oldest kept event anchors the chain: events trimmed by audit_retention
or audit_max_events are not a break, and neither is the removal of the
oldest ones. The newest event is covered once another follows it: keep the
printed head (seq and hash) and compare it with the next run, or with the
copy of the audit lines in the SIEM.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			v, err := verifyAudit(c)
			if err != nil {
				return err
			}
			if asJSON, _ := c.Flags().GetBool("json"); asJSON {
				return json.NewEncoder(c.OutOrStdout()).Encode(v)
			}
			w := c.OutOrStdout()
			if v.Break != nil {
				fmt.Fprintf(c.ErrOrStderr(), "audit trail BROKEN: event seq %d %s: %s\n", v.Break.Seq, v.Break.Kind, v.Break.Detail)
				return errPrinted
			}
			fmt.Fprintf(w, "audit trail intact: %d events, seq %d to %d\n", v.Events, v.First, v.Last)
			if v.Anchor != "" {
				fmt.Fprintf(w, "anchored at seq %d (the events before it were trimmed; its prev is %s)\n", v.First, v.Anchor)
			}
			if v.Unchained > 0 {
				fmt.Fprintf(w, "%d older events predate the chain\n", v.Unchained)
			}
			fmt.Fprintf(w, "head: seq %d sha256 %s\n", v.Last, v.Head)
			return nil
		},
	}))
}

func verifyAudit(c *cobra.Command) (*pushauth.AuditVerification, error) {
	file, _ := c.Flags().GetString("config")
	if file == "" {
		cl, err := newAdminClient(c)
		if err != nil {
			return nil, fmt.Errorf("%w (or --config FILE to read the store offline)", err)
		}
		out, err := cl.do(http.MethodGet, "/audit/verify", nil, nil)
		if err != nil {
			return nil, err
		}
		var v pushauth.AuditVerification
		if err := json.Unmarshal(out, &v); err != nil {
			return nil, fmt.Errorf("admin API answer: %w", err)
		}
		return &v, nil
	}
	adapter, _ := c.Flags().GetString("adapter")
	app, err := configuredApp(file, adapter)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(c.Context(), 10*time.Minute)
	defer cancel()
	store, audit, err := app.openStore(ctx, cliLogger(c))
	if err != nil {
		return nil, err
	}
	defer store.Close()
	if s, ok := store.(*embedded.Store); ok {
		if err := s.Start(); err != nil {
			return nil, fmt.Errorf("%w (is Caddy running? verify through its admin API instead: leave out --config)", err)
		}
	}
	walker, ok := audit.(pushauth.AuditWalker)
	if !ok {
		return nil, fmt.Errorf("store %s: its audit log cannot be walked", storeTypeOf(app))
	}
	return pushauth.VerifyAudit(ctx, walker)
}
