// Package caddyrig runs Caddy built from this repository in front of a
// bank, for the end-to-end tests, the bench and the demo alike.
package caddyrig

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
)

// Build builds examples/caddy (Caddy with onepush) into dir/bin: not into
// dir itself, where a dir/caddy binary would stand in the way of the data
// directory Caddy makes under Env(dir).
func Build(dir string) (string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "bin", "caddy")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/onepush/onepush/examples/caddy")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building examples/caddy: %w", err)
	}
	return bin, nil
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Env keeps what Caddy stores on disk (the embedded store and its
// identity, Redis epochs, autosaved config) under dir, for a Caddy process
// and the `caddy onepush` commands that must find the same files.
func Env(dir string) []string {
	return append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
}

// Options is a Caddyfile's global options block: the admin endpoint on
// adminPort, no automatic HTTPS, nothing persisted, the servers options
// and the onepush app's options (lines as they go inside each block).
func Options(adminPort int, servers, onepush string) string {
	s := fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tauto_https off\n\tpersist_config off\n", adminPort)
	if servers != "" {
		s += "\tservers {\n" + servers + "\n\t}\n"
	}
	return s + "\tonepush {\n" + onepush + "\n\t}\n}\n"
}

// Site is a site on a loopback port with the given directives.
func Site(port int, directives string) string {
	return fmt.Sprintf("\n:%d {\n\tbind 127.0.0.1\n%s\n}\n", port, directives)
}

// GatedSite is a site whose requests pass the device API and the gate
// with policyFile before reverse_proxy to backend (host:port); extra
// directives go between.
func GatedSite(port int, policyFile, extra, backend string) string {
	return Site(port, fmt.Sprintf("\tonepush_device\n\tonepush {\n\t\tpolicy %s\n\t}\n%s\n\treverse_proxy %s", policyFile, extra, backend))
}
