package embedded_test

import (
	"path/filepath"
	"testing"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/store/embedded"
	"github.com/onepush/onepush/pushauth/storetest"
)

// layout puts the data file and the identity and key files in separate
// directories, as Caddy's data and config directories are.
func layout(t testing.TB) embedded.Options {
	t.Helper()
	dir := t.TempDir()
	return embedded.Options{
		Path:         filepath.Join(dir, "data", "onepush", "store.db"),
		IdentityFile: filepath.Join(dir, "config", "onepush", "embedded.json"),
		KeyFile:      filepath.Join(dir, "config", "onepush", "embedded.key"),
	}
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) pushauth.Store {
		o := layout(t)
		if _, err := embedded.Init(o); err != nil {
			t.Fatal(err)
		}
		s, err := embedded.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
