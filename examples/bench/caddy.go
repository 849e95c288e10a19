package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/onepush/onepush/internal/caddyrig"
)

// benchPolicy is the policy every gateway in the bench runs: the shape of
// examples/policy/bank.yaml (login, transfer, logout), with a user field
// the load clients vary and a timeout long enough for the holding figure.
const benchPolicy = `version: 1
session:
  cookie: SID
  ttl: 30m
rules:
  - name: login
    kind: login
    match:
      methods: [POST]
      path: {exact: /login}
      content_types: [application/x-www-form-urlencoded]
      fields: [user, password]
    user:
      template: "{form.user}"
    display:
      - {label: User, value: "{form.user}"}
    not_enrolled: allow
    success: {status: [200], set_cookie: SID}
    timeout: 10m
  - name: transfer
    kind: transaction
    match: {path: {prefix: /transfer}, fields: [payee, amount]}
    user: {session: true}
    display:
      - {label: Amount, value: "{form.amount} JPY"}
      - {label: Payee, value: "{form.payee}"}
  - name: logout
    kind: logout
    match: {methods: [POST, GET], path: {exact: /logout}}
    user: {session: true}
`

// gateway is one Caddy process with two sites on the same backend: Gated
// (onepush_device + onepush + reverse_proxy) and Plain (reverse_proxy only).
type gateway struct {
	*proc
	Gated, Plain, Admin string
	file                string
}

// caddyfile renders a gateway config; store is the body of the store
// option ("" for Caddy's default).
func caddyfile(adminPort, gated, plain int, receiver, backend, policyFile, store, global string) string {
	opts := "\t\twebhook_allow http://" + receiver + "/\n\t\tmax_held 50000\n\t\tpush_queue 50000"
	if store != "" {
		opts += "\n\t\tstore " + store
	}
	o := caddyrig.Options(adminPort, "", opts)
	if global != "" {
		o = strings.Replace(o, "{\n", "{\n"+global+"\n", 1) // first in the global options block
	}
	return o + caddyrig.GatedSite(gated, policyFile, "", backend) +
		caddyrig.Site(plain, "\treverse_proxy "+backend)
}

// gatewayConfig is what differs between the bench's gateways: the store
// block and the policy (benchPolicy when empty, in front of the bench's
// backend; peakPolicy in front of the legacy bank).
type gatewayConfig struct {
	store  string
	policy string
	// global are lines of Caddy's global options (the peak's
	// grace_period).
	global string
}

func writeConfig(dir, name, receiver, backend, store string) (file string, ports [3]int, err error) {
	return writeConfigWith(dir, name, receiver, backend, gatewayConfig{store: store})
}

func writeConfigWith(dir, name, receiver, backend string, gc gatewayConfig) (file string, ports [3]int, err error) {
	for i := range ports {
		if ports[i], err = caddyrig.FreePort(); err != nil {
			return "", ports, err
		}
	}
	text, pol := benchPolicy, filepath.Join(dir, "policy.yaml")
	if gc.policy != "" {
		text, pol = gc.policy, filepath.Join(dir, "policy-"+name+".yaml")
	}
	if err := os.WriteFile(pol, []byte(text), 0o600); err != nil {
		return "", ports, err
	}
	file = filepath.Join(dir, "Caddyfile."+name)
	err = os.WriteFile(file, []byte(caddyfile(ports[0], ports[1], ports[2], receiver, backend, pol, gc.store, gc.global)), 0o600)
	return file, ports, err
}

func startGateway(dir, bin, name, receiver, backend, store string) (*gateway, error) {
	return startGatewayWith(dir, bin, name, receiver, backend, gatewayConfig{store: store})
}

func startGatewayWith(dir, bin, name, receiver, backend string, gc gatewayConfig) (*gateway, error) {
	file, ports, err := writeConfigWith(dir, name, receiver, backend, gc)
	if err != nil {
		return nil, err
	}
	g := &gateway{
		Admin: fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		Gated: fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		Plain: fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
		file:  file,
	}
	if err := g.start(dir, bin, name); err != nil {
		return nil, err
	}
	return g, nil
}

// start runs a new Caddy process on g's config (the same ports), logging
// to dir/<name>.log, and waits until both sites answer: the bench's
// instance restart is a stop followed by this.
func (g *gateway) start(dir, bin, name string) error {
	p, err := startProc(dir, name, bin, []string{"run", "--config", g.file, "--adapter", "caddyfile"}, caddyrig.Env(dir))
	if err != nil {
		return err
	}
	for _, u := range []string{g.Gated + "/", g.Plain + "/"} {
		if err := waitHTTP(u, 30*time.Second, p); err != nil {
			p.stop()
			return err
		}
	}
	g.proc = p
	return nil
}

// adaptOK reports whether this Caddy build accepts and provisions a config
// with the given store block (caddy adapt --validate), so the cross-instance
// figure switches on by itself once the Redis store is wired in.
func adaptOK(dir, bin, receiver, backend, store string) (bool, string) {
	file, _, err := writeConfig(dir, "adapt-check", receiver, backend, store)
	if err != nil {
		return false, err.Error()
	}
	cmd := exec.Command(bin, "adapt", "--config", file, "--adapter", "caddyfile", "--validate")
	cmd.Env = caddyrig.Env(dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if i := strings.LastIndex(msg, "\n"); i >= 0 {
			msg = msg[i+1:]
		}
		return false, msg
	}
	return true, ""
}

// forceGC asks Caddy's runtime to collect (pprof heap with gc=1), so RSS
// baselines do not carry garbage from the previous phase.
func (g *gateway) forceGC() {
	resp, err := http.Get(g.Admin + "/debug/pprof/heap?gc=1")
	if err == nil {
		resp.Body.Close()
	}
}
