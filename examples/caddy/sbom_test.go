package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// sbomGenerator is the CycloneDX generator docs/operations.md tells the
// bank to run on its Caddy build; the test runs the very command.
const sbomGenerator = "github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0"

// TestSBOMListsTheNamedDependencies builds this Caddy, makes its
// CycloneDX SBOM with the documented command and checks that it lists the
// dependencies a bank's review asks about, at the versions go.mod
// requires.
func TestSBOMListsTheNamedDependencies(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "go run "+sbomGenerator+" bin -json -output caddy.cdx.json ./caddy") {
		t.Fatalf("docs/operations.md does not show the SBOM command this test runs (%s bin …)", sbomGenerator)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "caddy")
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("go", "build", "-C", mustAbs(t, "."), "-o", bin, ".")
	run("go", "run", sbomGenerator, "bin", "-json", "-output", "caddy.cdx.json", "./caddy")

	raw, err := os.ReadFile(filepath.Join(dir, "caddy.cdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sbom struct {
		BOMFormat  string `json:"bomFormat"`
		Components []struct {
			Name    string `json:"name"`
			Version string `json:"version"`
			PURL    string `json:"purl"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &sbom); err != nil || sbom.BOMFormat != "CycloneDX" {
		t.Fatalf("not a CycloneDX JSON SBOM (%v): %.200s", err, raw)
	}
	listed := map[string]string{}
	for _, c := range sbom.Components {
		listed[c.Name] = c.Version
	}
	gomod, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, mod := range []string{"github.com/caddyserver/caddy/v2", "github.com/golang-jwt/jwt/v5", "github.com/redis/go-redis/v9",
		"github.com/sideshow/apns2", "firebase.google.com/go/v4"} {
		m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(mod) + `\s+(v\S+)`).FindSubmatch(gomod)
		if m == nil {
			t.Fatalf("go.mod does not require %s", mod)
		}
		if got := listed[mod]; got != string(m[1]) {
			t.Errorf("SBOM lists %s at %q, go.mod requires %s", mod, got, m[1])
		}
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
