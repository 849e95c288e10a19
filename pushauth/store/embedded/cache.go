package embedded

import "sync"

// maxCached bounds each record cache; a full cache starts over.
const maxCached = 100000

// recordCache keeps decoded records, so the path of a held request (the
// user's record on every matched request, the phone's credential on every
// device call) does not decode JSON and open a seal each time. A write
// invalidates its key before it is queued and again once committed; the
// version keeps a read that raced the write from caching what it read
// before the commit.
type recordCache[T any] struct {
	mu      sync.RWMutex
	m       map[string]T
	version uint64
}

func newRecordCache[T any]() *recordCache[T] { return &recordCache[T]{m: make(map[string]T)} }

// get returns the cached record, or the version a later put must quote.
func (c *recordCache[T]) get(key string) (T, uint64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.m[key]
	return v, c.version, ok
}

// put caches v unless a write invalidated anything since get.
func (c *recordCache[T]) put(key string, v T, version uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version != version {
		return
	}
	if len(c.m) >= maxCached {
		clear(c.m)
	}
	c.m[key] = v
}

func (c *recordCache[T]) invalidate(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
	c.version++
}
