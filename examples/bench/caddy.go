package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
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

// buildCaddy builds examples/caddy into dir.
func buildCaddy(dir string) (string, error) {
	bin := filepath.Join(dir, "caddy-bin")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/onepush/onepush/examples/caddy")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building examples/caddy: %w", err)
	}
	return bin, nil
}

// caddyfile renders a gateway config; store is the body of the store
// option ("" for Caddy's default).
func caddyfile(adminPort, gated, plain int, receiver, backend, policyFile, store string) string {
	if store != "" {
		store = "\t\tstore " + store + "\n"
	}
	return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	auto_https off
	persist_config off
	onepush {
		webhook_allow http://%s/
		max_held 50000
		push_queue 50000
%s	}
}

:%d {
	bind 127.0.0.1
	onepush_device
	onepush {
		policy %s
	}
	reverse_proxy %s
}

:%d {
	bind 127.0.0.1
	reverse_proxy %s
}
`, adminPort, receiver, store, gated, policyFile, backend, plain, backend)
}

func writeConfig(dir, name, receiver, backend, store string) (file string, ports [3]int, err error) {
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return "", ports, err
		}
	}
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(benchPolicy), 0o600); err != nil {
		return "", ports, err
	}
	file = filepath.Join(dir, "Caddyfile."+name)
	err = os.WriteFile(file, []byte(caddyfile(ports[0], ports[1], ports[2], receiver, backend, pol, store)), 0o600)
	return file, ports, err
}

func startGateway(dir, bin, name, receiver, backend, store string) (*gateway, error) {
	file, ports, err := writeConfig(dir, name, receiver, backend, store)
	if err != nil {
		return nil, err
	}
	env := []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}
	p, err := startProc(dir, name, bin, []string{"run", "--config", file, "--adapter", "caddyfile"}, env)
	if err != nil {
		return nil, err
	}
	g := &gateway{
		proc:  p,
		Admin: fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		Gated: fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		Plain: fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
		file:  file,
	}
	for _, u := range []string{g.Gated + "/", g.Plain + "/"} {
		if err := waitHTTP(u, 30*time.Second, p); err != nil {
			p.stop()
			return nil, err
		}
	}
	return g, nil
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
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
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
