package embedded

// Commits is how many transactions the writer committed: the tests use it
// to show which operations wait for the disk.
func (s *Store) Commits() int64 {
	st, err := s.state()
	if err != nil {
		return -1
	}
	return st.w.commits.Load()
}
