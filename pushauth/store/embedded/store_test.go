package embedded_test

import (
	"path/filepath"
	"sync"
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

// TestContract runs the store contract, with the restarts of a durable
// store: what the outbox holds is there after a reopen of the file.
func TestContract(t *testing.T) {
	var mu sync.Mutex
	opened := map[pushauth.Store]embedded.Options{}
	storetest.Run(t, func(t *testing.T) pushauth.Store {
		o := layout(t)
		if _, err := embedded.Init(o); err != nil {
			t.Fatal(err)
		}
		s, err := embedded.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		opened[s] = o
		mu.Unlock()
		return s
	}, storetest.Durable(func(t *testing.T, closed pushauth.Store) pushauth.Store {
		mu.Lock()
		o, ok := opened[closed]
		mu.Unlock()
		if !ok {
			t.Fatal("reopen: not a store of this test")
		}
		s, err := embedded.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}))
}
