package memory

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// memNotification is an outbox message and when it is next due: its
// creation time, a retry time, or the end of the lease of the claim that
// holds it.
type memNotification struct {
	n   pushauth.Notification
	due time.Time
}

func (s *Store) EnqueueNotification(_ context.Context, n *pushauth.Notification) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.outbox[n.ID]; dup {
		return pushauth.ErrExists
	}
	cp := *n
	cp.Body = append([]byte(nil), n.Body...)
	s.outbox[n.ID] = &memNotification{n: cp, due: n.Time}
	return nil
}

func (s *Store) ClaimNotifications(_ context.Context, now time.Time, max int, lease time.Duration) ([]*pushauth.Notification, error) {
	var tok [8]byte
	_, _ = rand.Read(tok[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []*memNotification
	for _, m := range s.outbox {
		if !m.due.After(now) {
			due = append(due, m)
		}
	}
	slices.SortFunc(due, func(a, b *memNotification) int {
		return cmp.Or(a.due.Compare(b.due), cmp.Compare(a.n.ID, b.n.ID))
	})
	if len(due) > max {
		due = due[:max]
	}
	out := make([]*pushauth.Notification, 0, len(due))
	for _, m := range due {
		m.n.Attempts++
		m.n.Lease = hex.EncodeToString(tok[:]) + ":" + m.n.ID
		m.due = now.Add(lease)
		cp := m.n
		cp.Body = append([]byte(nil), m.n.Body...)
		out = append(out, &cp)
	}
	return out, nil
}

func (s *Store) AckNotification(_ context.Context, id string) error {
	s.mu.Lock()
	delete(s.outbox, id)
	s.mu.Unlock()
	return nil
}

func (s *Store) RetryNotification(_ context.Context, id, lease string, next time.Time, lastErr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.outbox[id]
	if !ok || m.n.Lease != lease || lease == "" {
		return pushauth.ErrConflict
	}
	m.n.Lease, m.n.LastError, m.due = "", lastErr, next
	return nil
}

func (s *Store) NotificationBacklog(context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.outbox), nil
}
