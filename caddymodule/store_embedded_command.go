package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddyserver/caddy/v2"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/httpapi"
	"github.com/onepush/onepush/pushauth/store/embedded"
)

func init() {
	storeSubcommands = append(storeSubcommands, storeInitCommand, storeBackupCommand, storeRestoreCommand, storeMigrateCommand)
}

// configFlags are the flags of the commands that read the gateway's
// config to find its store, as `caddy run` reads it.
func configFlags(c *cobra.Command) *cobra.Command {
	c.Flags().StringP("config", "c", "", "the gateway's config file (default: ./Caddyfile, as caddy run finds it)")
	c.Flags().StringP("adapter", "a", "", "name of the config adapter to use")
	return c
}

// configuredApp reads the onepush app from a gateway's config (the
// defaults when the config has none).
func configuredApp(file, adapter string) (*App, error) {
	cfg, _, _, err := caddycmd.LoadConfig(file, adapter)
	if err != nil {
		return nil, err
	}
	var parsed struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if len(cfg) > 0 {
		if err := json.Unmarshal(cfg, &parsed); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	app := new(App)
	if raw := parsed.Apps["onepush"]; raw != nil {
		if err := json.Unmarshal(raw, app); err != nil {
			return nil, fmt.Errorf("config: apps.onepush: %w", err)
		}
	}
	return app, nil
}

// openStore loads the app's store module as Caddy would and opens it
// with the app's keys; the caller closes the store.
func (a *App) openStore(c context.Context, logger *slog.Logger) (pushauth.Store, pushauth.AuditLog, error) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: c})
	defer cancel()
	if _, err := a.loadStore(ctx); err != nil {
		return nil, nil, err
	}
	sealer, err := a.sealer()
	if err != nil {
		return nil, nil, err
	}
	return a.store.OpenStore(a.storeEnv(sealer, logger))
}

// embeddedOptionsOf is the embedded store the gateway's config names.
func embeddedOptionsOf(c *cobra.Command) (embedded.Options, error) {
	file, _ := c.Flags().GetString("config")
	adapter, _ := c.Flags().GetString("adapter")
	app, err := configuredApp(file, adapter)
	if err != nil {
		return embedded.Options{}, err
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: c.Context()})
	defer cancel()
	if _, err := app.loadStore(ctx); err != nil {
		return embedded.Options{}, err
	}
	es, ok := app.store.(*EmbeddedStore)
	if !ok {
		return embedded.Options{}, fmt.Errorf("the config's store is %q, not the embedded store", app.storeType)
	}
	sealer, err := app.sealer()
	if err != nil {
		return embedded.Options{}, err
	}
	return es.options(app.storeEnv(sealer, cliLogger(c))), nil
}

func cliLogger(c *cobra.Command) *slog.Logger {
	return slog.New(slog.NewTextHandler(c.ErrOrStderr(), nil))
}

func storeInitCommand() *cobra.Command {
	return quiet(configFlags(&cobra.Command{
		Use:   "init",
		Short: "Creates the embedded store's file for a new installation",
		Long: `Creates the file of the embedded store the config names (by default
onepush/store.db under Caddy's data directory), once. Caddy never creates it
by itself: a missing file stops it, since every user would look not
enrolled. init refuses when the file exists, and when this gateway used a
store there before (its identity record in Caddy's config directory): that
is a loss to restore from a backup, not a new installation.

Run it as the user Caddy runs as, with the same environment (HOME or
XDG_DATA_HOME / XDG_CONFIG_HOME), e.g.
  sudo -u caddy -H caddy onepush store init --config /etc/caddy/Caddyfile`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			opts, err := embeddedOptionsOf(c)
			if err != nil {
				return err
			}
			info, err := embedded.Init(opts)
			if err != nil {
				return err
			}
			w := c.OutOrStdout()
			fmt.Fprintf(w, "created store %s at %s\nidentity recorded in %s\n", info.StoreID, info.Path, opts.IdentityFile)
			if info.KeyFile != "" {
				fmt.Fprintf(w, "sealing key generated in %s: back it up once, apart from the store's backups (they are useless without it), or configure encryption_key instead\n", info.KeyFile)
			} else {
				fmt.Fprintln(w, "secrets are sealed with the configured encryption_key")
			}
			return nil
		},
	}))
}

func storeBackupCommand() *cobra.Command {
	c := quiet(&cobra.Command{
		Use:   "backup FILE",
		Short: "Writes a consistent copy of the running gateway's embedded store to FILE",
		Long: `Asks the running gateway, through its admin API (--admin, token in
$ONEPUSH_ADMIN_TOKEN), for a consistent copy of its embedded store, which
it makes while serving, and writes it to FILE (never over an existing file).
The copy is checked before it is kept. It holds bindings and the sealed
security-code secrets, no secret in clear; restoring it needs the store's
key (encryption_key or the generated key file).`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return backupStore(c, args[0])
		},
	})
	return c
}

func backupStore(c *cobra.Command, file string) error {
	cl, err := newAdminClient(c)
	if err != nil {
		return err
	}
	if _, err := os.Stat(file); err == nil {
		return fmt.Errorf("%s exists: choose a new file for the backup", file)
	}
	req, err := http.NewRequest(http.MethodGet, cl.base+"/store/backup", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+cl.token)
	if cl.actor != "" {
		req.Header.Set(httpapi.ActorHeader, cl.actor)
	}
	// No overall timeout: a large store takes as long as it takes.
	hc := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 2 * time.Minute}}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin API %s: %w", cl.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = string(b)
		}
		return fmt.Errorf("admin API GET /store/backup: %d: %s", resp.StatusCode, e.Error)
	}
	partial := file + ".partial"
	out, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("received %d of %d bytes", n, resp.ContentLength)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		var info *embedded.FileInfo
		if info, err = embedded.Inspect(partial); err == nil {
			// Link, then unlink: never replaces a file that appeared meanwhile.
			if err = os.Link(partial, file); err == nil {
				_ = os.Remove(partial)
				fmt.Fprintf(c.OutOrStdout(), "backup of store %s at generation %d written to %s (%d bytes): %d credentials, %d users (%d with a phone), %d audit events, newest %s\n",
					info.StoreID, info.Generation, file, n, info.Credentials, info.Users, info.Bound, info.AuditEvents, info.LastEvent.UTC().Format(time.RFC3339))
				return nil
			}
		}
	}
	_ = os.Remove(partial)
	return fmt.Errorf("backup to %s: %w", file, err)
}

func storeRestoreCommand() *cobra.Command {
	c := quiet(configFlags(&cobra.Command{
		Use:   "restore BACKUP",
		Short: "Replaces the stopped gateway's embedded store with a backup",
		Long: `Restores BACKUP (made by caddy onepush store backup) as the embedded store
the config names. The gateway must be stopped. It lists what the restore
undoes — phones bound after the backup lose their binding; phones removed,
users locked, suspended or deregistered after it are back as they were —
and changes nothing unless --accept-rollback is given. The restore and
every change it undoes are recorded in the restored audit trail; the
replaced file is kept next to it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			opts, err := embeddedOptionsOf(c)
			if err != nil {
				return err
			}
			accept, _ := c.Flags().GetBool("accept-rollback")
			var rb *embedded.Rollback
			if accept {
				rb, err = embedded.Restore(opts, args[0], cliActor(c, "restore"))
			} else {
				rb, err = embedded.PlanRestore(opts, args[0])
			}
			if err != nil {
				return err
			}
			printRollback(c.OutOrStdout(), opts.Path, rb)
			if !accept {
				return errors.New("nothing restored: run again with --accept-rollback to undo the changes above")
			}
			fmt.Fprintf(c.OutOrStdout(), "restored %s", opts.Path)
			if rb.Replaced != "" {
				fmt.Fprintf(c.OutOrStdout(), "; the replaced file is kept at %s", rb.Replaced)
			}
			fmt.Fprintln(c.OutOrStdout(), "; start the gateway")
			return nil
		},
	}))
	c.Flags().Bool("accept-rollback", false, "restore, undoing the changes listed")
	return c
}

func storeMigrateCommand() *cobra.Command {
	c := quiet(configFlags(&cobra.Command{
		Use:   "migrate --to CONFIG",
		Short: "Copies the stopped gateway's embedded store into the Redis store of another config",
		Long: `Moves a gateway that outgrew one machine to Redis. With the gateway stopped,
it copies everything its embedded store keeps (the store --config names)
into the Redis that the config given with --to names (store redis {...}):
credentials, bindings and user states with their failure counts and locks,
outstanding activation codes, the notifications not yet delivered, learned
sessions and used security codes and device tokens with what is left of
their lifetimes, and the audit trail. It refuses a Redis that already holds one of the users. The embedded
store is left as it was, with the migration in its audit trail; start the
gateways on the --to config afterwards. Run it as the user Caddy runs as,
with the same environment: the Redis store records its epoch under Caddy's
data directory.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			to, _ := c.Flags().GetString("to")
			toAdapter, _ := c.Flags().GetString("to-adapter")
			if to == "" {
				return errors.New("--to CONFIG is required: the config of the gateways on Redis")
			}
			opts, err := embeddedOptionsOf(c)
			if err != nil {
				return err
			}
			toApp, err := configuredApp(to, toAdapter)
			if err != nil {
				return err
			}
			if t := storeTypeOf(toApp); t != "redis" {
				return fmt.Errorf("%s: its store is %q; migrate copies into store redis", to, t)
			}
			src, err := embedded.Open(opts)
			if err != nil {
				return err
			}
			defer src.Close()
			ctx := context.Background()
			dst, dstAudit, err := toApp.openStore(ctx, cliLogger(c))
			if err != nil {
				return err
			}
			defer dst.Close()
			n, err := src.Export(ctx, dst, dstAudit)
			if err != nil {
				return err
			}
			who := cliActor(c, "migrate")
			detail := fmt.Sprintf("embedded store %s copied to the Redis store of %s: %d credentials, %d users, %d activation codes, %d undelivered notifications, %d sessions, %d used codes and tokens, %d audit events",
				opts.Path, to, n.Credentials, n.Users, n.ActivationCodes, n.Notifications, n.Sessions, n.Markers, n.AuditEvents)
			ev := pushauth.AuditEvent{Time: time.Now(), Type: pushauth.AuditAdmin, Outcome: "store.migrated", Actor: who, Detail: detail}
			if err := dstAudit.Append(ctx, ev); err != nil {
				return err
			}
			if err := src.AuditLog().Append(ctx, ev); err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), detail+"; start the gateways on "+to)
			return nil
		},
	}))
	c.Flags().String("to", "", "config of the gateways on Redis")
	c.Flags().String("to-adapter", "", "config adapter of --to")
	return c
}

func printRollback(w io.Writer, path string, rb *embedded.Rollback) {
	desc := func(i *embedded.FileInfo) string {
		return fmt.Sprintf("store %s at generation %d: %d users (%d with a phone), %d credentials, %d activation codes, %d undelivered notifications, newest audit event %s",
			i.StoreID, i.Generation, i.Users, i.Bound, i.Credentials, i.ActivationCodes, i.Notifications, i.LastEvent.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(w, "backup:  %s\n", desc(rb.Backup))
	if rb.Current == nil {
		fmt.Fprintf(w, "current: %s is missing; what changed after the backup is unknown and is lost\n", path)
	} else {
		fmt.Fprintf(w, "current: %s\n", desc(rb.Current))
	}
	if len(rb.Changes) == 0 {
		fmt.Fprintln(w, "restoring undoes no binding, revocation or state change (sessions and audit events since the backup are lost)")
	} else {
		fmt.Fprintln(w, "restoring undoes (activation codes and failure counts: keeps):")
		for _, ch := range rb.Changes {
			who := ch.User
			if who == "" {
				who = "credential " + ch.Credential
			}
			fmt.Fprintf(w, "  %-15s %s: now %s; restored: %s\n", ch.Kind, who, ch.Now, ch.Restored)
		}
		fmt.Fprintf(w, "%d bindings, %d revocations, %d other state changes, %d credential changes, %d activation codes, %d failure counts\n",
			rb.Count("binding"), rb.Count("revocation"), rb.Count("state"), rb.Count("credential"), rb.Count("activation_code"), rb.Count("failures"))
	}
	o := rb.Outbox
	if rb.Current != nil {
		fmt.Fprintf(w, "notifications: the %d not yet delivered are sent after the restore (%d of them queued after the backup); %d the backup holds were delivered since and are not sent again; used security codes and device tokens are kept\n",
			o.Kept, o.QueuedSince, o.Delivered)
	} else {
		fmt.Fprintf(w, "notifications: the backup's %d not delivered then are sent after the restore (some may have been delivered since; the receiver de-duplicates by id)\n", o.Kept)
	}
	if o.Announced > 0 {
		fmt.Fprintf(w, "the customers are told of the %d bindings the restore changes (phone.bound / phone.replaced via restore, phone.deregistered)\n", o.Announced)
	}
}

// cliActor names the operator in the audit trail: --actor, else the login
// name, and the command.
func cliActor(c *cobra.Command, command string) string {
	who, _ := c.Flags().GetString("actor")
	if who == "" {
		if cur, err := user.Current(); err == nil {
			who = cur.Username
		}
	}
	if who == "" {
		who = "uid " + strconv.Itoa(os.Getuid())
	}
	return who + " (caddy onepush store " + command + ")"
}

// storeTypeOf is the type of the store a config names, before loading it.
func storeTypeOf(a *App) string {
	var named struct {
		Type string `json:"type"`
	}
	if len(a.StoreRaw) == 0 || json.Unmarshal(a.StoreRaw, &named) != nil || named.Type == "" {
		return "embedded"
	}
	return named.Type
}
