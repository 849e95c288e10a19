package caddymodule

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/gate"
	"github.com/onepush/onepush/pushauth/httpapi"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "onepush",
		Usage: "user|audit|policy|store ...",
		Short: "Manages onepush users and the audit trail, lints and tests policy files",
		Long: `
Operations on a running onepush gateway, through its admin API (the
onepush_admin handler):

  caddy onepush user show KEY
  caddy onepush user suspend KEY [--until RFC3339 | --grace DURATION]
  caddy onepush user resume KEY
  caddy onepush user unlock KEY
  caddy onepush user deregister KEY [--until RFC3339 | --grace DURATION]
  caddy onepush user bind KEY CREDENTIAL_ID
  caddy onepush user unbind KEY
  caddy onepush user activation-code KEY [--recovery]
  caddy onepush audit [--user KEY] [--since T|DURATION] [--until T] [--type TYPE] [--limit N]
  caddy onepush requests list|approve ID|reject ID|collect ID   (dual control)
  caddy onepush audit verify [--config FILE]   (the hash chain; --config: offline)

These need --admin URL (or $ONEPUSH_ADMIN_URL), the admin API's base URL,
e.g. https://10.0.0.5:9443/onepush/admin/v1 (a URL without a path gets
/onepush/admin/v1), and the bearer token in $ONEPUSH_ADMIN_TOKEN (or
--token, which other local users can see in the process list): your own
operator token where the gateway names operators, who the audit trail
then records. With the single shared token, --actor names you (default:
your login name). Under dual control a change answers with a request
that another operator, a supervisor, approves with requests approve.

Offline, on files:

  caddy onepush policy lint FILE
  caddy onepush policy test FILE REQUEST

On the running gateways (through Caddy's admin endpoint):

  caddy onepush policy apply FILE [--address ADMIN]... [--dry-run] [--policy-file PATH]

lint prints every problem as FILE:LINE: FIELD: MESSAGE and exits 1, or
summarises the rules. test reads REQUEST, a raw HTTP/1.1 request (request
line, headers, blank line, body), and shows the rule it matches, the user
key and the display fields the phone would show.

The store (see caddy onepush store --help for each):

  caddy onepush store init [--config FILE]
  caddy onepush store backup FILE          (through the admin API)
  caddy onepush store restore BACKUP [--config FILE] [--accept-rollback]
  caddy onepush store migrate --config FILE --to FILE
`,
		CobraFunc: func(cmd *cobra.Command) {
			pf := cmd.PersistentFlags()
			pf.String("admin", "", "admin API base URL (default $ONEPUSH_ADMIN_URL)")
			pf.String("token", "", "admin API bearer token (default $ONEPUSH_ADMIN_TOKEN)")
			pf.String("actor", "", "your name in the audit trail (default: login name)")
			pf.Bool("json", false, "print the admin API's JSON as is")
			cmd.AddCommand(userCommand(), auditCommand(), policyCommand(), storeCommand())
			// Dual control (#22).
			cmd.AddCommand(requestsCommand())
			refuseUnknown(cmd)
		},
	})
}

// refuseUnknown makes every command that only groups others (onepush,
// user, policy, store …) fail on an unknown subcommand instead of printing
// its help and exiting 0, so a script's typo does not pass for success.
func refuseUnknown(c *cobra.Command) {
	if !c.HasSubCommands() {
		return
	}
	if c.Run == nil && c.RunE == nil {
		c.Args = cobra.NoArgs
		c.SilenceUsage = true
		c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	}
	for _, sub := range c.Commands() {
		refuseUnknown(sub)
	}
}

// quiet keeps cobra from printing usage on every error: the message says
// what failed.
func quiet(c *cobra.Command) *cobra.Command {
	c.SilenceUsage = true
	return c
}

func userCommand() *cobra.Command {
	u := &cobra.Command{Use: "user", Short: "Shows or changes a user's push authentication state"}
	simple := func(action, short string) *cobra.Command {
		return quiet(&cobra.Command{
			Use: action + " KEY", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				return adminCall(c, action, map[string]string{"key": args[0]})
			},
		})
	}
	withDeadline := func(action, short string) *cobra.Command {
		c := quiet(&cobra.Command{
			Use: action + " KEY", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				body := map[string]string{"key": args[0]}
				body["until"], _ = c.Flags().GetString("until")
				body["grace"], _ = c.Flags().GetString("grace")
				return adminCall(c, action, body)
			},
		})
		c.Flags().String("until", "", "end of the password-only grace period (RFC 3339)")
		c.Flags().String("grace", "", "password-only grace period from now, e.g. 72h (default: the gateway's)")
		return c
	}
	u.AddCommand(
		quiet(&cobra.Command{
			Use: "show KEY", Short: "Shows state, phone, deadlines and recent challenges", Args: cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				cl, err := newAdminClient(c)
				if err != nil {
					return err
				}
				out, err := cl.do(http.MethodGet, "/user", url.Values{"key": {args[0]}}, nil)
				var ae *adminError
				if errors.As(err, &ae) && ae.status == http.StatusNotFound && strings.Contains(ae.msg, pushauth.ErrUnknownUser.Error()) {
					// The gateway keeps a user only once a phone is bound:
					// a customer of the bank without one is not unknown.
					out, err = json.Marshal(pushauth.UserView{Key: args[0], Recent: []pushauth.AuditEvent{}})
				}
				if err != nil {
					return err
				}
				return printUser(c, out)
			},
		}),
		withDeadline("suspend", "Suspends push authentication; password only until the deadline"),
		simple("resume", "Ends a suspension"),
		simple("unlock", "Unlocks a user locked after repeated failures"),
		withDeadline("deregister", "Removes the user's phone; password only until the deadline"),
		quiet(&cobra.Command{
			Use: "bind KEY CREDENTIAL_ID", Short: "Binds a registered app to a user (support staff)", Args: cobra.ExactArgs(2),
			RunE: func(c *cobra.Command, args []string) error {
				return adminCall(c, "bind", map[string]string{"key": args[0], "credential_id": args[1]})
			},
		}),
		simple("unbind", "Removes the user's phone with no grace period"),

		// Binding a phone needs more than a password.
		activationCodeCommand(),
		// Passkeys (passkeys.go).
		passkeysCommand(),
	)
	return u
}

// activationCodeCommand issues an activation code for the bank to hand
// over (binding code) or post (account-recovery code); it is shown once.
func activationCodeCommand() *cobra.Command {
	c := quiet(&cobra.Command{
		Use:   "activation-code KEY",
		Short: "Issues the code a user needs to bind a phone (binding code; --recovery: account-recovery code by post)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newAdminClient(c)
			if err != nil {
				return err
			}
			kind := pushauth.ActivationBinding
			if rec, _ := c.Flags().GetBool("recovery"); rec {
				kind = pushauth.ActivationRecovery
			}
			out, err := cl.do(http.MethodPost, "/user/activation-code", nil, map[string]string{"key": args[0], "kind": kind})
			if err != nil {
				return err
			}
			if printPending(c, out) {
				return nil
			}
			return printCode(c, out)
		},
	})
	c.Flags().Bool("recovery", false, "an account-recovery code sent by post, valid for the policy's recovery_code_validity")
	return c
}

// printCode shows an activation code the admin API issued.
func printCode(c *cobra.Command, out []byte) error {
	var res struct {
		Key       string    `json:"key"`
		Kind      string    `json:"kind"`
		Code      string    `json:"code"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if printed, err := printOrDecode(c, out, &res); printed || err != nil {
		return err
	}
	what := "binding code: hand it over in this session only"
	if res.Kind == pushauth.ActivationRecovery {
		what = "account-recovery code: send it by post to the address of record"
	}
	fmt.Fprintf(c.OutOrStdout(), "user:       %s\nkind:       %s\ncode:       %s\nvalid until: %s\n", res.Key, what, res.Code, res.ExpiresAt.UTC().Format(time.RFC3339))
	return nil
}

func auditCommand() *cobra.Command {
	c := quiet(&cobra.Command{
		Use: "audit", Short: "Queries the audit trail", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := newAdminClient(c)
			if err != nil {
				return err
			}
			q := url.Values{}
			f := c.Flags()
			for _, name := range []string{"user", "type", "limit"} {
				if v, _ := f.GetString(name); v != "" {
					q.Set(name, v)
				}
			}
			for _, name := range []string{"since", "until"} {
				v, _ := f.GetString(name)
				if v == "" {
					continue
				}
				if d, err := time.ParseDuration(v); err == nil {
					v = time.Now().Add(-d).UTC().Format(time.RFC3339)
				}
				q.Set(name, v)
			}
			out, err := cl.do(http.MethodGet, "/audit", q, nil)
			if err != nil {
				return err
			}
			var res struct {
				Events []pushauth.AuditEvent `json:"events"`
			}
			if printed, err := printOrDecode(c, out, &res); printed || err != nil {
				return err
			}
			w := c.OutOrStdout()
			for _, ev := range res.Events {
				fmt.Fprintf(w, "%s  %-22s", ev.Time.UTC().Format(time.RFC3339), ev.Type)
				for _, kv := range [][2]string{{"user", ev.User}, {"outcome", ev.Outcome}, {"rule", ev.Rule}, {"credential", ev.Credential},
					{"challenge", ev.Challenge}, {"client_ip", ev.ClientIP}, {"actor", ev.Actor}, {"detail", ev.Detail}} {
					if kv[1] != "" {
						fmt.Fprintf(w, " %s=%q", kv[0], kv[1])
					}
				}
				fmt.Fprintln(w)
			}
			return nil
		},
	})
	f := c.Flags()
	f.String("user", "", "only this user key")
	f.String("since", "", "from this time (RFC 3339) or this long ago (e.g. 24h)")
	f.String("until", "", "up to this time (RFC 3339) or this long ago")
	f.String("type", "", "only this event type, e.g. challenge.decided")
	f.String("limit", "", "at most this many events, the newest (default and max 1000)")
	// The hash chain (#22).
	c.AddCommand(auditVerifyCommand())
	return c
}

func policyCommand() *cobra.Command {
	p := &cobra.Command{Use: "policy", Short: "Lints or tests a policy file (offline)"}
	p.AddCommand(
		quiet(&cobra.Command{
			Use: "lint FILE", Short: "Checks a policy file; every problem with its line and field", Args: cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error { return lintPolicy(c, args[0]) },
		}),
		quiet(&cobra.Command{
			Use: "test FILE REQUEST", Short: "Shows the rule, user key and display fields for a raw HTTP request", Args: cobra.ExactArgs(2),
			RunE: func(c *cobra.Command, args []string) error { return testPolicy(c, args[0], args[1]) },
		}),
		// Applied to running gateways: policy_apply.go.
		policyApplyCommand(),
	)
	return p
}

// errPrinted ends a command whose message is already on stderr.
var errPrinted = errors.New("failed")

func lintPolicy(c *cobra.Command, file string) error {
	pol, err := policy.Load(file)
	if err != nil {
		fmt.Fprintln(c.ErrOrStderr(), err)
		c.SilenceErrors = true
		return errPrinted
	}
	w := c.OutOrStdout()
	fmt.Fprintf(w, "%s: OK, %d rules\n", file, len(pol.Rules))
	for _, r := range pol.Rules {
		fmt.Fprintf(w, "  %s (line %d): %s %s %s, mode %s, timeout %s, body limit %d", r.Name, r.Line, r.Kind,
			strings.Join(r.Methods(), ","), r.Describe(), r.Mode, r.Timeout, r.BodyLimit)
		if r.NotEnrolled != "" {
			fmt.Fprintf(w, ", not enrolled: %s", r.NotEnrolled)
		}
		if r.DryRun {
			fmt.Fprint(w, ", DRY RUN")
		}
		if r.Service != "" {
			fmt.Fprintf(w, ", service %s", r.Service)
		}
		if b := r.DescribeAggregate(); b != "" {
			fmt.Fprintf(w, ", batch: %s", b)
		}
		if a := r.Assurance(); a != "" {
			fmt.Fprintf(w, ", assurance: %s", a)
		}
		fmt.Fprintln(w)
	}
	if s := pol.StepUp; s != nil {
		pattern := ""
		if s.Pattern != nil {
			pattern = s.Pattern.String()
		}
		fmt.Fprintf(w, "  step-up required: users %v, pattern %q\n", s.Users, pattern)
	}
	if pol.DeregistrationGrace > 0 {
		fmt.Fprintf(w, "  deregistration grace: %s\n", pol.DeregistrationGrace)
	}
	lintEnrolment(w, pol)
	refused := false
	for _, wn := range pol.Warnings() {
		if wn.Error {
			// Caddy still starts with it; lint, run before a deploy, says no.
			fmt.Fprintf(c.ErrOrStderr(), "%s:%d: %s: %s\n", file, wn.Line, wn.Field, wn.Message)
			refused = true
			continue
		}
		fmt.Fprintf(w, "  warning: %s:%d: %s: %s\n", file, wn.Line, wn.Field, wn.Message)
	}
	if refused {
		c.SilenceErrors = true
		return errPrinted
	}
	return nil
}

// lintEnrolment shows how phones are bound, and warns where the password
// cannot bind a first phone because no rule says how the bank shows an
// accepted login.
func lintEnrolment(w io.Writer, pol *policy.Policy) {
	en := pol.Enrolment
	fmt.Fprintf(w, "  enrolment: first phone by %s, another phone by %s; binding codes valid %s, account-recovery codes %s\n",
		en.First, en.Replace, en.BindingCodeValidity, en.RecoveryCodeValidity)
	if en.First != policy.ProofPassword {
		return
	}
	for _, r := range pol.Rules {
		if r.Kind == policy.KindLogin && r.NotEnrolled == policy.ActionAllow && r.Success == nil {
			fmt.Fprintf(w, "  warning: %s (line %d) has no success condition: users it lets in cannot bind a first phone with the password, only with an activation code\n", r.Name, r.Line)
		}
	}
}

func testPolicy(c *cobra.Command, file, reqFile string) error {
	pol, err := policy.Load(file)
	if err != nil {
		fmt.Fprintln(c.ErrOrStderr(), err)
		c.SilenceErrors = true
		return errPrinted
	}
	data, err := os.ReadFile(reqFile)
	if err != nil {
		return err
	}
	br := bufio.NewReader(bytes.NewReader(data))
	req, err := http.ReadRequest(br)
	if err != nil {
		return fmt.Errorf("%s: not a raw HTTP/1.1 request: %w", reqFile, err)
	}
	if req.ContentLength <= 0 && len(req.TransferEncoding) == 0 {
		// A hand-written sample may omit Content-Length: the rest of the
		// file is the body.
		rest, _ := io.ReadAll(br)
		req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(rest)), int64(len(rest))
	}
	req.RemoteAddr = "192.0.2.1:1234"
	w := c.OutOrStdout()
	rule := pol.Match(req)
	if rule == nil {
		fmt.Fprintln(w, "no rule matches: the request goes straight to the bank")
		return nil
	}
	if rule.Kind == policy.KindRefuse {
		fmt.Fprintf(w, "refused (%s): the gateway answers 400/403 and forwards nothing\n", rule.Name)
		return nil
	}
	fmt.Fprintf(w, "rule: %s (line %d, kind %s, mode %s, timeout %s)\n", rule.Name, rule.Line, rule.Kind, rule.Mode, rule.Timeout)
	body, err := io.ReadAll(io.LimitReader(req.Body, rule.BodyLimit+1))
	if err != nil {
		return fmt.Errorf("%s: reading the body: %w", reqFile, err)
	}
	if int64(len(body)) > rule.BodyLimit {
		fmt.Fprintf(w, "refused: body over the rule's limit of %d bytes (413)\n", rule.BodyLimit)
		return nil
	}
	ex, err := rule.Extract(req, body)
	if err != nil {
		fmt.Fprintf(w, "refused: %v (400)\n", err)
		return nil
	}
	switch {
	case rule.UsesSession() && ex.SessionID == "":
		fmt.Fprintf(w, "user: from the learned session, but the request carries no %s cookie (refused)\n", pol.Session.Cookie)
	case rule.UsesSession():
		fmt.Fprintf(w, "user: from the session learned at login (cookie %s)\n", pol.Session.Cookie)
	default:
		fmt.Fprintf(w, "user: %s\n", ex.UserKey)
		fmt.Fprintf(w, "step-up required after a grace period: %v\n", pol.RequiresStepUp(ex.UserKey))
	}
	if rule.Service != "" || ex.Host != "" {
		fmt.Fprintf(w, "service: %s, host: %s\n", rule.Service, ex.Host)
	}
	if tx := ex.Transaction; tx != nil {
		fmt.Fprintf(w, "transaction: amount %s, currency %s, payee %q", tx.Amount, tx.Currency, tx.Payee)
		if tx.PayeeName != "" {
			fmt.Fprintf(w, ", payee name %q", tx.PayeeName)
		}
		fmt.Fprintln(w)
	}
	if len(ex.Display) > 0 {
		fmt.Fprintln(w, "display:")
		for _, f := range ex.Display {
			fmt.Fprintf(w, "  %s: %s\n", f.Label, f.Value)
		}
	}
	printAggregate(w, rule, ex)
	printDecisions(w, pol, rule, ex.UserKey)
	return nil
}

// printDecisions prints what the gate decides (gate.Decide, the gate's
// own function) for the request's user in each state the store could
// hold for it.
func printDecisions(w io.Writer, pol *policy.Policy, rule *policy.Rule, key string) {
	now := time.Now()
	states := []struct {
		name string
		user pushauth.User
	}{
		{"a phone bound", pushauth.User{Key: key, CredentialID: "OPSAMPLE", State: pushauth.UserActive}},
		{"no phone yet", pushauth.User{Key: key}},
		{"suspended, within grace", pushauth.User{Key: key, State: pushauth.UserSuspended, Until: now.Add(time.Hour)}},
		{"suspended, grace over", pushauth.User{Key: key, State: pushauth.UserSuspended, PreviousCredentialID: "OPSAMPLE"}},
		{"deregistered, grace over", pushauth.User{Key: key, State: pushauth.UserDeregistered, PreviousCredentialID: "OPSAMPLE"}},
		{"locked", pushauth.User{Key: key, CredentialID: "OPSAMPLE", State: pushauth.UserLocked}},
	}
	fmt.Fprintln(w, "what the gateway does, by the user's state:")
	for _, s := range states {
		d := gate.Decide(pol, rule, &s.user, now)
		switch d.Step {
		case gate.StepChallenge:
			how := string(rule.Mode)
			if rule.Challenge == policy.ChallengeAfterSuccess {
				how = "after_success"
			}
			fmt.Fprintf(w, "  %s: challenge (%s)\n", s.name, how)
		case gate.StepDryRun:
			fmt.Fprintf(w, "  %s: dry run: the gateway would only log this\n", s.name)
		case gate.StepRefuse:
			fmt.Fprintf(w, "  %s: refused (%s, 403)\n", s.name, d.Access)
		default:
			fmt.Fprintf(w, "  %s: %s\n", s.name, d.Step)
		}
	}
}

// adminClient calls the onepush admin API.
type adminClient struct {
	base, token, actor string
	hc                 *http.Client
}

func newAdminClient(c *cobra.Command) (*adminClient, error) {
	f := c.Flags()
	base, _ := f.GetString("admin")
	if base == "" {
		base = os.Getenv("ONEPUSH_ADMIN_URL")
	}
	if base == "" {
		return nil, errors.New("--admin URL (or ONEPUSH_ADMIN_URL) is required: the onepush admin API's base URL")
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--admin %q: must be an http(s) URL", base)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = httpapi.DefaultAdminBase
	}
	token, _ := f.GetString("token")
	if token == "" {
		token = os.Getenv("ONEPUSH_ADMIN_TOKEN")
	}
	if token == "" {
		return nil, errors.New("admin token required: set ONEPUSH_ADMIN_TOKEN (or --token)")
	}
	who, _ := f.GetString("actor")
	if who == "" {
		if cur, err := user.Current(); err == nil {
			who = cur.Username
		}
	}
	return &adminClient{base: strings.TrimSuffix(u.String(), "/"), token: token, actor: who, hc: &http.Client{Timeout: 30 * time.Second}}, nil
}

func (cl *adminClient) do(method, path string, q url.Values, body any) ([]byte, error) {
	target := cl.base + path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+cl.token)
	if cl.actor != "" {
		req.Header.Set(httpapi.ActorHeader, cl.actor)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := cl.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API %s: %w", cl.base, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(out, &e)
		if e.Error == "" {
			e.Error = strings.TrimSpace(string(out))
		}
		return nil, &adminError{method: method, path: path, status: resp.StatusCode, msg: e.Error}
	}
	return out, nil
}

// adminError is a refusal of the admin API.
type adminError struct {
	method, path string
	status       int
	msg          string
}

func (e *adminError) Error() string {
	return fmt.Sprintf("admin API %s %s: %d: %s", e.method, e.path, e.status, e.msg)
}

func adminCall(c *cobra.Command, action string, body map[string]string) error {
	cl, err := newAdminClient(c)
	if err != nil {
		return err
	}
	for k, v := range body {
		if v == "" {
			delete(body, k)
		}
	}
	out, err := cl.do(http.MethodPost, "/user/"+action, nil, body)
	if err != nil {
		return err
	}
	if printPending(c, out) {
		return nil
	}
	return printUser(c, out)
}

// printUser shows a user view: JSON with --json, else a short summary.
func printUser(c *cobra.Command, out []byte) error {
	w := c.OutOrStdout()
	var v pushauth.UserView
	if printed, err := printOrDecode(c, out, &v); printed || err != nil {
		return err
	}
	if v.State == "" && !v.Enrolled {
		fmt.Fprintf(w, "user:       %s\nstate:      no phone registered with onepush (each rule's not_enrolled decides)\nenrolled:   false\n", v.Key)
		return nil
	}
	fmt.Fprintf(w, "user:       %s\nstate:      %s\nenrolled:   %v\n", v.Key, v.State, v.Enrolled)
	if v.CredentialID != "" {
		fmt.Fprintf(w, "credential: %s\n", v.CredentialID)
	}
	fmt.Fprintf(w, "failures:   %d\n", v.Failures)
	if v.Until != nil {
		grace := "over"
		if v.InGrace {
			grace = "running"
		}
		fmt.Fprintf(w, "until:      %s (grace %s)\n", v.Until.UTC().Format(time.RFC3339), grace)
	}
	if len(v.Recent) > 0 {
		fmt.Fprintln(w, "recent challenges:")
		for _, ev := range v.Recent {
			fmt.Fprintf(w, "  %s  %-20s %-10s rule=%s client_ip=%s\n", ev.Time.UTC().Format(time.RFC3339), ev.Type, ev.Outcome, ev.Rule, ev.ClientIP)
		}
	}
	return nil
}

// printOrDecode writes the admin API's answer out as it came with --json
// (printed); otherwise it decodes it into v for a summary.
func printOrDecode(c *cobra.Command, out []byte, v any) (printed bool, err error) {
	if asJSON, _ := c.Flags().GetBool("json"); asJSON {
		_, err := c.OutOrStdout().Write(out)
		return true, err
	}
	if err := json.Unmarshal(out, v); err != nil {
		return false, fmt.Errorf("admin API answer: %w", err)
	}
	return false, nil
}
