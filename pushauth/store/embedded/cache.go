package embedded

import "sync"

// maxCached bounds each record cache; a full cache starts over.
const maxCached = 100000

// recordCache keeps decoded records, so the path of a held request (the
// user's record on every matched request, the phone's credential on every
// device call) does not decode JSON and open a seal each time.
//
// A write shows in the cache from the moment it is queued, as in the
// memory store: a lock, a token found dead or a phone removed is seen by
// every request at once, not a commit later. The writer is answered only
// once the write is on disk, and a write that fails is dropped from the
// cache. The version keeps a read that raced a write from caching what it
// read from the file before the write.
type recordCache[T any] struct {
	mu      sync.RWMutex
	m       map[string]cached[T]
	version uint64
}

type cached[T any] struct {
	v      T
	absent bool // deleted, the delete not yet committed or since
}

func newRecordCache[T any]() *recordCache[T] { return &recordCache[T]{m: make(map[string]cached[T])} }

// get returns the cached entry, or the version a later fill must quote.
func (c *recordCache[T]) get(key string) (cached[T], uint64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.m[key]
	return e, c.version, ok
}

// fill caches what a read found in the file, unless a write changed
// anything since get.
func (c *recordCache[T]) fill(key string, v T, version uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version == version {
		c.setLocked(key, cached[T]{v: v})
	}
}

// set records a write (absent: a delete) as it is queued.
func (c *recordCache[T]) set(key string, e cached[T]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version++
	c.setLocked(key, e)
}

func (c *recordCache[T]) setLocked(key string, e cached[T]) {
	if len(c.m) >= maxCached {
		clear(c.m)
	}
	c.m[key] = e
}

// drop forgets key, after a write that failed: the file says what is true.
func (c *recordCache[T]) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version++
	delete(c.m, key)
}
