package embedded

import "sync"

// maxCached bounds each record cache; a full cache forgets every record
// that no write is committing.
const maxCached = 100000

// recordCache keeps decoded records, so the path of a held request (the
// user's record on every matched request, the phone's credential on every
// device call) does not decode JSON and open a seal each time.
//
// A write shows in the cache from the moment it is queued, as in the
// memory store: a lock, a token found dead or a phone removed is seen by
// every request at once, not a commit later. The writer is answered only
// once the write is on disk, and a write that fails is dropped from the
// cache. A write whose record is computed in the writer's transaction (a
// failure counted) shows as pending until it is committed: reads go to the
// file meanwhile, which holds everything acknowledged.
//
// Writes of one key are queued in the order they show in the cache (order
// is held from showing to queueing), and a record with a write in flight
// is never filled from the file nor forgotten when the cache is full, so
// the cache never keeps what the file no longer says. The version keeps a
// read that raced a write from caching what it read from the file before
// the write.
type recordCache[T any] struct {
	// order is held from showing a write to queueing it.
	order sync.Mutex

	mu       sync.RWMutex
	m        map[string]cached[T]
	inflight map[string]int // writes queued and not yet committed or failed
	version  uint64
}

type cached[T any] struct {
	v       T
	absent  bool   // deleted, the delete not yet committed or since
	pending bool   // computed by a write not yet committed: read the file
	ver     uint64 // the version that set it
}

func newRecordCache[T any]() *recordCache[T] {
	return &recordCache[T]{m: make(map[string]cached[T]), inflight: make(map[string]int)}
}

// get returns the cached entry, or the version a later fill must quote.
func (c *recordCache[T]) get(key string) (cached[T], uint64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.m[key]
	if e.pending {
		return cached[T]{}, c.version, false
	}
	return e, c.version, ok
}

// fill caches what a read found in the file, unless a write changed
// anything since get or one is in flight for key.
func (c *recordCache[T]) fill(key string, v T, version uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version == version && c.inflight[key] == 0 {
		c.setLocked(key, cached[T]{v: v, ver: c.version})
	}
}

// begin shows a write (absent: a delete; pending: computed by the writer)
// as it is queued; end must follow once it is committed or failed.
func (c *recordCache[T]) begin(key string, e cached[T]) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version++
	e.ver = c.version
	c.inflight[key]++
	c.setLocked(key, e)
	return e.ver
}

// end settles the write begin numbered ver. Unless a later write showed
// since, a failed write is forgotten (the file says what is true), and a
// pending one takes the record the writer computed (nil: forgotten).
func (c *recordCache[T]) end(key string, ver uint64, ok bool, computed *T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight[key]--; c.inflight[key] <= 0 {
		delete(c.inflight, key)
	}
	e, has := c.m[key]
	if !has || e.ver != ver || (ok && !e.pending) {
		return
	}
	c.version++
	if ok && computed != nil {
		c.m[key] = cached[T]{v: *computed, ver: c.version}
		return
	}
	delete(c.m, key)
}

// forget drops key (a record deleted by the sweep), unless a write is in
// flight for it.
func (c *recordCache[T]) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight[key] == 0 {
		c.version++
		delete(c.m, key)
	}
}

func (c *recordCache[T]) setLocked(key string, e cached[T]) {
	if _, ok := c.m[key]; !ok && len(c.m) >= maxCached {
		for k := range c.m {
			if c.inflight[k] == 0 {
				delete(c.m, k)
			}
		}
	}
	c.m[key] = e
}
