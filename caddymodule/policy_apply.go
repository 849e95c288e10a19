package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/google/renameio/v2"
	"github.com/spf13/cobra"

	"github.com/onepush/onepush/policy"
)

// maxAdminConfig bounds what policy apply reads of a running instance's
// configuration (GET /config/) and of its answers.
const maxAdminConfig = 8 << 20

// policyApplyCommand is `caddy onepush policy apply`: a policy file reaches
// running gateways only through a forced reload, because the configuration
// names the file and does not change when the file does (a plain
// `caddy reload` says "config is unchanged" and keeps the old policy).
func policyApplyCommand() *cobra.Command {
	c := quiet(&cobra.Command{
		Use:   "apply FILE [--address ADMIN]... [--dry-run] [--policy-file PATH]",
		Short: "Lints FILE, writes it where the running gateways read their policy and reloads them",
		Long: `
Lints FILE and refuses it on any error (nothing is written, nothing
reloaded). Otherwise it asks each running instance for its configuration,
finds the policy file that configuration names (the "policy" of the
onepush handler), writes FILE there atomically (a temporary file in the
same directory, fsync, rename) so that a restart reads it too, and reloads
each instance, forced, as caddy reload --force does (with If-Match, so
that a configuration changed meanwhile is refused rather than undone). It
prints what changed, rule by rule, and per instance whether the reload
took; it exits 1 if any instance failed. If none reloaded, the previous
file is put back.

--address is Caddy's admin endpoint (as for caddy reload), not the onepush
admin API (--admin); repeat it for every instance that reads the file;
default localhost:2019.

Before anything changes it stops if an instance cannot be reached, if the
instances name different policy files, or if the policy file cannot be
written. A configuration whose sites name several policy files needs
--policy-file to say which one FILE replaces.

--dry-run lints, reads the instances' configuration, checks that the
policy file can be written and prints what would change; nothing is
written or reloaded.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return applyPolicy(c, args[0]) },
	})
	c.Flags().StringArray("address", nil, "admin endpoint of a running instance (host:port or unix/path); repeat for a fleet (default localhost:2019)")
	c.Flags().Bool("dry-run", false, "print what would change and change nothing")
	c.Flags().String("policy-file", "", "when the configuration names several policy files (one per site), the one FILE replaces")
	return c
}

func applyPolicy(c *cobra.Command, file string) error {
	out, errOut := c.OutOrStdout(), c.ErrOrStderr()
	fail := func(format string, args ...any) error {
		fmt.Fprintf(errOut, format+"\n", args...)
		c.SilenceErrors = true
		return errPrinted
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fail("policy apply: %v", err)
	}
	// What is linted is what is written: the bytes read once.
	pol, problems := lintBytes(file, data)
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(errOut, p)
		}
		return fail("policy apply: %s does not lint; nothing was written or reloaded", file)
	}
	addrs, _ := c.Flags().GetStringArray("address")
	if len(addrs) == 0 {
		addrs = []string{caddy.DefaultAdminListen}
	}
	dry, _ := c.Flags().GetBool("dry-run")
	site, _ := c.Flags().GetString("policy-file")

	// Every instance's running configuration first, so that nothing changes
	// unless all of them can be reached and agree on the file.
	configs := make([][]byte, len(addrs))
	etags := make([]string, len(addrs))
	target := ""
	for i, a := range addrs {
		cfg, h, err := adminRequest(a, http.MethodGet, "/config/", nil, nil)
		if err != nil {
			return fail("policy apply: %s: reading the running configuration: %v; nothing was written or reloaded", a, err)
		}
		p, err := choosePolicyPath(policyPaths(cfg), site)
		if err != nil {
			return fail("policy apply: %s: %v; nothing was written or reloaded", a, err)
		}
		if target != "" && p != target {
			return fail("policy apply: %s names the policy file %s but %s names %s; nothing was written or reloaded", addrs[0], target, a, p)
		}
		target = p
		configs[i], etags[i] = cfg, h.Get("Etag")
	}
	// A symlinked policy (a mounted config map) is replaced where it points.
	if real, err := filepath.EvalSymlinks(target); err == nil {
		target = real
	}

	var old *policy.Policy
	oldData, err := os.ReadFile(target)
	if err == nil {
		old, _ = policy.Parse(target, oldData)
	}
	changes := policy.Diff(old, pol)
	fmt.Fprintf(out, "%s: OK, %d rules; policy file of the running gateways: %s\n", file, len(pol.Rules), target)
	for _, a := range addrs {
		if !localAdmin(a) {
			// The file is written here; an instance on another host that
			// reads its own copy would reload its old policy, successfully.
			fmt.Fprintf(out, "  note: %s is not on this machine: it takes the new policy only if it reads %s from storage shared with this one\n", a, target)
		}
	}
	if old == nil {
		fmt.Fprintf(out, "  (no readable policy at %s before: every rule counts as added)\n", target)
	}
	printChanges(out, changes)
	if dry {
		// Where apply would write its temporary file, one is made and
		// removed, so that the dry run also answers "can it be written".
		pf, err := renameio.NewPendingFile(target, renameio.WithTempDir(filepath.Dir(target)))
		if err != nil {
			return fail("policy apply: %s cannot be written: %v", target, err)
		}
		_ = pf.Cleanup()
		fmt.Fprintln(out, "dry run: nothing was written or reloaded")
		return nil
	}

	if err := writePolicyFile(target, data); err != nil {
		return fail("policy apply: writing %s: %v; nothing was reloaded", target, err)
	}
	fmt.Fprintf(out, "wrote %s\n", target)
	failed := 0
	for i, a := range addrs {
		// The configuration as read, forced (must-revalidate, as caddy
		// reload --force) so that Caddy provisions it anew and reads the
		// policy file; If-Match refuses it if someone changed the
		// configuration since, rather than undo their change.
		h := http.Header{"Cache-Control": {"must-revalidate"}}
		if etags[i] != "" {
			h.Set("If-Match", etags[i])
		}
		_, _, err := adminRequest(a, http.MethodPost, "/config/", h, configs[i])
		if err != nil {
			failed++
			fmt.Fprintf(out, "%s: FAILED: %v\n", a, err)
			continue
		}
		fmt.Fprintf(out, "%s: reloaded, %s\n", a, changes.Summary())
	}
	if failed == len(addrs) && oldData != nil {
		// No instance runs the new policy: the file goes back to what they
		// run, so that a restart does not start one that nobody has.
		if err := writePolicyFile(target, oldData); err != nil {
			return fail("policy apply: no instance reloaded, and restoring the previous %s failed: %v; a restart reads the new policy", target, err)
		}
		return fail("policy apply: no instance reloaded; %s is restored to the policy they run", target)
	}
	if failed > 0 {
		return fail("policy apply: %d of %d instances did not reload; they keep the policy they had until they reload or restart (a restart reads %s)", failed, len(addrs), target)
	}
	return nil
}

// choosePolicyPath picks, among the policy files a running configuration
// names, the one to replace: the only one, or want when there are several.
func choosePolicyPath(paths []string, want string) (string, error) {
	var p string
	switch {
	case len(paths) == 0:
		return "", errors.New("the running configuration has no onepush handler with a policy file")
	case want != "":
		for _, x := range paths {
			if x == want {
				p = x
			}
		}
		if p == "" {
			return "", fmt.Errorf("--policy-file %s is not one the running configuration names (%s)", want, strings.Join(paths, ", "))
		}
	case len(paths) > 1:
		return "", fmt.Errorf("the running configuration names several policy files (%s): say which one with --policy-file", strings.Join(paths, ", "))
	default:
		p = paths[0]
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("the running configuration names the policy file %q, relative to Caddy's working directory: name it by an absolute path in the configuration", p)
	}
	return p, nil
}

// localAdmin reports whether an admin address is on this machine (a unix
// socket or a loopback address).
func localAdmin(addr string) bool {
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil {
		return false
	}
	if na.IsUnixNetwork() || na.IsFdNetwork() {
		return true
	}
	if na.Host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(na.Host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// lintBytes parses data as `caddy onepush policy lint` does and returns
// every problem that makes lint refuse, as FILE:LINE: FIELD: MESSAGE.
func lintBytes(file string, data []byte) (*policy.Policy, []string) {
	pol, err := policy.Parse(file, data)
	if err != nil {
		return nil, strings.Split(err.Error(), "\n")
	}
	var problems []string
	for _, w := range pol.Warnings() {
		if w.Error {
			problems = append(problems, fmt.Sprintf("%s:%d: %s: %s", file, w.Line, w.Field, w.Message))
		}
	}
	return pol, problems
}

func printChanges(w io.Writer, c policy.Changes) {
	if c.Empty() {
		fmt.Fprintln(w, "  no change in behaviour (the gateways reload it all the same)")
		return
	}
	for _, n := range c.Added {
		fmt.Fprintf(w, "  rule %s: added\n", n)
	}
	for _, n := range c.Removed {
		fmt.Fprintf(w, "  rule %s: removed\n", n)
	}
	for _, r := range c.Changed {
		fmt.Fprintf(w, "  rule %s: changed (%s)\n", r.Name, strings.Join(r.Fields, "; "))
	}
	if c.Reordered {
		fmt.Fprintln(w, "  rules reordered (the first rule that matches wins)")
	}
	for _, s := range c.Settings {
		fmt.Fprintf(w, "  %s: changed\n", s)
	}
}

// adminRequest calls a Caddy admin endpoint as Caddy's own commands do and
// returns the answer's body, read up to maxAdminConfig, and its header.
func adminRequest(addr, method, uri string, h http.Header, body []byte) ([]byte, http.Header, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, h, rd)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminConfig+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the answer: %v", err)
	}
	if len(b) > maxAdminConfig {
		return nil, nil, fmt.Errorf("answer larger than %d bytes", maxAdminConfig)
	}
	return b, resp.Header, nil
}

// policyPaths returns the distinct policy files that the onepush handlers
// of a Caddy JSON configuration name, sorted.
func policyPaths(cfg []byte) []string {
	var root any
	if err := json.Unmarshal(cfg, &root); err != nil {
		return nil
	}
	seen := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["handler"] == "onepush" {
				if p, ok := x["policy"].(string); ok && p != "" {
					seen[p] = true
				}
			}
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	walk(root)
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// writePolicyFile replaces path with data atomically: readers (a reload,
// a restart) see the old file or the new one, never part of either. It
// keeps the old file's permissions.
func writePolicyFile(path string, data []byte) error {
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// The temporary file goes beside the policy, never to $TMPDIR (which
	// renameio would pick on the same file system): same directory, same
	// owner's view, and a rename that cannot cross a mount.
	if err := renameio.WriteFile(path, data, mode, renameio.WithTempDir(filepath.Dir(path))); err != nil {
		return err
	}
	// The rename is durable only once the directory is.
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
