package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/spf13/cobra"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth/gate"
	"github.com/onepush/onepush/pushauth/httpapi"
	"github.com/onepush/onepush/pushauth/passkey"
)

// PasskeyConfig is the relying party a site's gate speaks for when rules
// ask for passkeys (method: passkey or passkey_or_push), and where the
// passkey registration page lives.
type PasskeyConfig struct {
	// RPID is the WebAuthn relying party ID: the bank's registrable
	// domain or a parent of it ("bank.example.co.jp"), never an IP
	// address. Passkeys are bound to it: a look-alike domain gets nothing
	// it can use. Required.
	RPID string `json:"rp_id,omitempty"`

	// RPName is the name some authenticators show when a passkey is
	// created. Default: RPID.
	RPName string `json:"rp_name,omitempty"`

	// Origins are the exact origins (scheme://host[:port]) the bank's
	// pages are served from; a passkey response from any other origin is
	// refused. Each host must be RPID or under it. Required.
	Origins []string `json:"origins,omitempty"`

	// Path is the passkey registration page. Default "/onepush/passkeys";
	// "off" serves none (passkeys are then registered nowhere on this
	// site).
	Path string `json:"path,omitempty"`
}

// gatePasskeys checks the config and builds what the gate gets.
func (pc *PasskeyConfig) gatePasskeys() (*gate.Passkeys, error) {
	if pc.RPID == "" {
		return nil, fmt.Errorf("onepush: passkeys: rp_id is required")
	}
	if net.ParseIP(strings.Trim(pc.RPID, "[]")) != nil {
		return nil, fmt.Errorf("onepush: passkeys: rp_id %q: an IP address cannot be a WebAuthn RP ID; use the bank's domain", pc.RPID)
	}
	if len(pc.Origins) == 0 {
		return nil, fmt.Errorf("onepush: passkeys: origins are required (e.g. https://%s)", pc.RPID)
	}
	for _, o := range pc.Origins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, fmt.Errorf("onepush: passkeys: origin %q: must be scheme://host[:port]", o)
		}
		host := strings.ToLower(u.Hostname())
		if host != pc.RPID && !strings.HasSuffix(host, "."+pc.RPID) {
			return nil, fmt.Errorf("onepush: passkeys: origin %q: its host is not %s or under it", o, pc.RPID)
		}
	}
	path := pc.Path
	switch path {
	case "":
		path = "/onepush/passkeys"
	case "off":
		path = ""
	}
	if path != "" && (!strings.HasPrefix(path, "/") || strings.HasSuffix(path, "/")) {
		return nil, fmt.Errorf("onepush: passkeys: path %q: must start with / and not end with one", path)
	}
	name := pc.RPName
	if name == "" {
		name = pc.RPID
	}
	origins := make([]string, len(pc.Origins))
	for i, o := range pc.Origins {
		origins[i] = strings.TrimSuffix(o, "/")
	}
	return &gate.Passkeys{RP: passkey.RP{ID: pc.RPID, Name: name, Origins: origins}, Path: path}, nil
}

// passkeyRule is the first rule of pol that asks for a passkey, nil when
// none does.
func passkeyRule(pol *policy.Policy) *policy.Rule {
	for _, r := range pol.Rules {
		if r.UsesPasskey() {
			return r
		}
	}
	return nil
}

// parsePasskeys reads the handler's passkeys block:
//
//	passkeys {
//	    rp_id   bank.example.co.jp
//	    rp_name "Example Bank"
//	    origins https://bank.example.co.jp https://www.bank.example.co.jp
//	    path    /onepush/passkeys | off
//	}
func parsePasskeys(d *caddyfile.Dispenser) (*PasskeyConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	pc := &PasskeyConfig{}
	strs := map[string]*string{"rp_id": &pc.RPID, "rp_name": &pc.RPName, "path": &pc.Path}
	err := block(d, "passkeys", strs, func(opt string) error {
		if opt != "origins" {
			return errUnknown
		}
		pc.Origins = append(pc.Origins, d.RemainingArgs()...)
		if len(pc.Origins) == 0 {
			return d.Errf("origins: missing value")
		}
		return nil
	})
	return pc, err
}

// passkeysCommand lists a user's passkeys, or revokes one (--revoke ID),
// through the running gateway's admin API.
func passkeysCommand() *cobra.Command {
	c := quiet(&cobra.Command{
		Use:   "passkeys KEY",
		Short: "Lists the user's passkeys; --revoke ID removes one (the user is told)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newAdminClient(c)
			if err != nil {
				return err
			}
			if id, _ := c.Flags().GetString("revoke"); id != "" {
				out, err := cl.do(http.MethodPost, "/user/passkeys/revoke", nil, map[string]string{"key": args[0], "id": id})
				if err != nil {
					return err
				}
				if printed, err := printOrDecode(c, out, &struct{}{}); printed || err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "removed passkey %s of %s\n", id, args[0])
				return nil
			}
			out, err := cl.do(http.MethodGet, "/user/passkeys", url.Values{"key": {args[0]}}, nil)
			if err != nil {
				return err
			}
			var res struct {
				User     string                `json:"user"`
				Passkeys []httpapi.PasskeyView `json:"passkeys"`
			}
			if printed, err := printOrDecode(c, out, &res); printed || err != nil {
				return err
			}
			w := c.OutOrStdout()
			fmt.Fprintf(w, "user: %s, %d passkeys\n", res.User, len(res.Passkeys))
			for _, p := range res.Passkeys {
				last := "never"
				if !p.LastUsed.IsZero() {
					last = p.LastUsed.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(w, "  %s  created %s  last used %s  counter %d  payment %v  from %s (%s)\n",
					p.ID, p.CreatedAt.UTC().Format(time.RFC3339), last, p.SignCount, p.Payment, p.ClientIP, p.Browser)
			}
			return nil
		},
	})
	c.Flags().String("revoke", "", "remove the passkey with this ID (base64url, as listed)")
	return c
}
