// Package memory is a pushauth.Store in maps: nothing survives the process,
// so it serves tests, the demo, and the embedded store's live challenges.
package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// Store keeps everything in maps behind one mutex, expired entries
// swept once a minute so the maps stay bounded by what is live. Nothing
// survives the process: it is the store of tests and the demo (the
// embedded store keeps a single gateway's records across restarts, and
// keeps its challenges in one of these).
type Store struct {
	now func() time.Time

	mu          sync.Mutex
	credentials map[string]*pushauth.Credential
	users       map[string]*pushauth.User
	challenges  map[string]*memChallenge
	pendingOf   map[string][]string // user key -> ids of its pending challenges (pushauth.PendingRule)
	jtis        map[string]time.Time
	sessions    map[string]memSession
	watchers    map[int]func(string, *pushauth.Challenge)
	nextWatcher int
	outbox      map[string]*memNotification         // outbox.go
	activation  map[string]*pushauth.ActivationCode // user key → code, activation.go
	passkeys    map[string][]*pushauth.Passkey      // user key → passkeys, passkeys.go
	requests    adminRequests                       // adminrequests.go

	stop chan struct{}
	once sync.Once
}

type memChallenge struct {
	c           pushauth.Challenge
	retainUntil time.Time
}

type memSession struct {
	user  string
	until time.Time
}

// New returns an empty store; now may be nil for time.Now.
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	s := &Store{
		now:         now,
		credentials: make(map[string]*pushauth.Credential),
		users:       make(map[string]*pushauth.User),
		challenges:  make(map[string]*memChallenge),
		pendingOf:   make(map[string][]string),
		jtis:        make(map[string]time.Time),
		sessions:    make(map[string]memSession),
		watchers:    make(map[int]func(string, *pushauth.Challenge)),
		outbox:      make(map[string]*memNotification),
		activation:  make(map[string]*pushauth.ActivationCode),
		passkeys:    make(map[string][]*pushauth.Passkey),
		stop:        make(chan struct{}),
	}
	go s.sweepLoop()
	return s
}

func (s *Store) sweepLoop() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Sweep()
		}
	}
}

// Sweep drops every entry whose lifetime has ended.
func (s *Store) Sweep() {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, mc := range s.challenges {
		if now.After(mc.retainUntil) {
			delete(s.challenges, id)
			s.unpend(mc.c.UserKey, id)
		}
	}
	for k, until := range s.jtis {
		if now.After(until) {
			delete(s.jtis, k)
		}
	}
	for k, ms := range s.sessions {
		if now.After(ms.until) {
			delete(s.sessions, k)
		}
	}
	for id, c := range s.credentials {
		if c.Expired(now) {
			delete(s.credentials, id)
		}
	}
	for k, c := range s.activation {
		if !now.Before(c.ExpiresAt) {
			delete(s.activation, k)
		}
	}
}

func (s *Store) PutCredential(_ context.Context, c *pushauth.Credential) error {
	cp := *c
	s.mu.Lock()
	s.credentials[c.ID] = &cp
	s.mu.Unlock()
	return nil
}

func (s *Store) GetCredential(_ context.Context, id string) (*pushauth.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.credentials[id]
	if !ok || c.Expired(s.now()) {
		return nil, pushauth.ErrNotFound
	}
	cp := *c
	return &cp, nil
}

func (s *Store) DeleteCredential(_ context.Context, id string) error {
	s.mu.Lock()
	delete(s.credentials, id)
	s.mu.Unlock()
	return nil
}

func (s *Store) PutUser(_ context.Context, u *pushauth.User) error {
	cp := *u
	s.mu.Lock()
	s.users[u.Key] = &cp
	s.mu.Unlock()
	return nil
}

// CompareAndPutUser compares and stores under the store's lock, the lock
// AddFailure counts under.
func (s *Store) CompareAndPutUser(_ context.Context, old, u *pushauth.User) error {
	cp := *u
	s.mu.Lock()
	defer s.mu.Unlock()
	if !pushauth.SameUser(s.users[u.Key], old) {
		return fmt.Errorf("memory store: user %q: %w", u.Key, pushauth.ErrUserChanged)
	}
	s.users[u.Key] = &cp
	return nil
}

func (s *Store) GetUser(_ context.Context, key string) (*pushauth.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[key]
	if !ok {
		return nil, pushauth.ErrNotFound
	}
	cp := *u
	return &cp, nil
}

func (s *Store) UsersOfCredential(_ context.Context, credentialID string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k, u := range s.users {
		if u.CredentialID == credentialID {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

func (s *Store) CreateChallenge(_ context.Context, c *pushauth.Challenge, retainUntil time.Time) ([]string, error) {
	s.mu.Lock()
	if _, dup := s.challenges[c.ID]; dup {
		s.mu.Unlock()
		return nil, pushauth.ErrExists
	}
	var pending []*pushauth.Challenge
	for _, id := range s.pendingOf[c.UserKey] {
		if mc, ok := s.challenges[id]; ok && mc.c.Status == pushauth.StatusPending {
			pending = append(pending, &mc.c)
		}
	}
	stop, err := pushauth.PendingRule(pending, c)
	if err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("memory store: user %q: %w", c.UserKey, err)
	}
	var superseded []string
	var records []pushauth.Challenge
	for _, old := range stop {
		old.Status = pushauth.StatusSuperseded
		old.DecidedAt = s.now()
		superseded, records = append(superseded, old.ID), append(records, *old)
	}
	s.challenges[c.ID] = &memChallenge{c: *c, retainUntil: retainUntil}
	ids := []string{c.ID}
	for _, p := range pending {
		if p.Status == pushauth.StatusPending {
			ids = append(ids, p.ID)
		}
	}
	s.pendingOf[c.UserKey] = ids
	watchers := s.watcherList()
	s.mu.Unlock()
	for _, rec := range records {
		notify(watchers, rec)
	}
	return superseded, nil
}

// unpend takes id off its user's pending list; s.mu must be held.
func (s *Store) unpend(user, id string) {
	ids := s.pendingOf[user]
	for i, p := range ids {
		if p == id {
			ids = append(ids[:i:i], ids[i+1:]...)
			break
		}
	}
	if len(ids) == 0 {
		delete(s.pendingOf, user)
		return
	}
	s.pendingOf[user] = ids
}

func (s *Store) GetChallenge(_ context.Context, id string) (*pushauth.Challenge, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mc, ok := s.challenges[id]
	if !ok || s.now().After(mc.retainUntil) {
		return nil, pushauth.ErrNotFound
	}
	cp := mc.c
	return &cp, nil
}

func (s *Store) Resolve(_ context.Context, id string, to pushauth.Status, fraud bool, at time.Time) (*pushauth.Challenge, error) {
	s.mu.Lock()
	mc, ok := s.challenges[id]
	if !ok {
		s.mu.Unlock()
		return nil, pushauth.ErrNotFound
	}
	if mc.c.Status != pushauth.StatusPending {
		cp := mc.c
		s.mu.Unlock()
		return &cp, pushauth.ErrConflict
	}
	mc.c.Status = to
	mc.c.Fraud = fraud
	mc.c.DecidedAt = at
	s.unpend(mc.c.UserKey, id)
	cp := mc.c
	watchers := s.watcherList()
	s.mu.Unlock()
	notify(watchers, cp)
	return &cp, nil
}

func (s *Store) PendingForCredential(_ context.Context, credentialID string) ([]*pushauth.Challenge, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*pushauth.Challenge
	for _, ids := range s.pendingOf {
		for _, id := range ids {
			mc, ok := s.challenges[id]
			if ok && mc.c.CredentialID == credentialID && mc.c.Status == pushauth.StatusPending && now.Before(mc.c.ExpiresAt) {
				cp := mc.c
				out = append(out, &cp)
			}
		}
	}
	return out, nil
}

func (s *Store) SetPushResult(_ context.Context, id, result string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	mc, ok := s.challenges[id]
	if !ok {
		return pushauth.ErrNotFound
	}
	mc.c.PushResult = result
	return nil
}

func (s *Store) UseJTI(_ context.Context, jti string, until time.Time) (bool, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.jtis[jti]; ok && !now.After(prev) {
		return false, nil
	}
	s.jtis[jti] = until
	return true, nil
}

func (s *Store) PutSession(_ context.Context, hash, userKey string, ttl time.Duration) error {
	s.mu.Lock()
	s.sessions[hash] = memSession{user: userKey, until: s.now().Add(ttl)}
	s.mu.Unlock()
	return nil
}

func (s *Store) GetSession(_ context.Context, hash string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ms, ok := s.sessions[hash]
	if !ok || s.now().After(ms.until) {
		return "", pushauth.ErrNotFound
	}
	return ms.user, nil
}

func (s *Store) DeleteSession(_ context.Context, hash string) error {
	s.mu.Lock()
	delete(s.sessions, hash)
	s.mu.Unlock()
	return nil
}

func (s *Store) Watch(fn func(string, *pushauth.Challenge)) (func(), error) {
	s.mu.Lock()
	id := s.nextWatcher
	s.nextWatcher++
	s.watchers[id] = fn
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.watchers, id)
		s.mu.Unlock()
	}, nil
}

// ReliableWatch reports that Watch never loses a notification: every
// Resolve and supersede calls the watchers in-process, so the engine needs
// no periodic re-read of held challenges (Config.Backstop).
func (s *Store) ReliableWatch() bool { return true }

// watcherList must be called with s.mu held; callbacks run after unlocking
// so a watcher may call back into the store.
func (s *Store) watcherList() []func(string, *pushauth.Challenge) {
	if len(s.watchers) == 0 {
		return nil
	}
	out := make([]func(string, *pushauth.Challenge), 0, len(s.watchers))
	for _, fn := range s.watchers {
		out = append(out, fn)
	}
	return out
}

// notify hands each watcher its own copy of the final record.
func notify(watchers []func(string, *pushauth.Challenge), final pushauth.Challenge) {
	for _, fn := range watchers {
		cp := final
		fn(final.ID, &cp)
	}
}

// Close stops the sweeper.
func (s *Store) Close() error {
	s.once.Do(func() { close(s.stop) })
	return nil
}

var _ pushauth.Store = (*Store)(nil)
