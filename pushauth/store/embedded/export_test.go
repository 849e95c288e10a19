package embedded

import (
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Commits is how many transactions the writer committed: the tests use it
// to show which operations wait for the disk.
func (s *Store) Commits() int64 {
	st, err := s.state()
	if err != nil {
		return -1
	}
	return st.w.commits.Load()
}

// AddBucket makes the package know one bucket more, as a later feature
// would; the returned func forgets it. Not for parallel tests.
func AddBucket(name string) func() {
	old := buckets
	buckets = append(slices.Clone(buckets), []byte(name))
	return func() { buckets = old }
}

// HasBucket reports whether the open store's file has the bucket.
func (s *Store) HasBucket(name string) bool {
	st, err := s.state()
	if err != nil {
		return false
	}
	found := false
	_ = st.db.View(func(tx *bolt.Tx) error { found = tx.Bucket([]byte(name)) != nil; return nil })
	return found
}
