package pushauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/onepush/onepush/policy"
)

func TestAddressKeyCountsIPv6By64(t *testing.T) {
	tests := []struct{ ip, want string }{
		{"198.51.100.7", "198.51.100.7"},
		{"::ffff:198.51.100.7", "198.51.100.7"},
		{"2001:db8:5:6::1", "2001:db8:5:6::/64"},
		{"2001:db8:5:6:ffff:ffff:ffff:ffff", "2001:db8:5:6::/64"},
		{"2001:db8:5:7::1", "2001:db8:5:7::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"not an address", "not an address"},
	}
	for _, tc := range tests {
		if got := addressKey(tc.ip); got != tc.want {
			t.Errorf("addressKey(%q) = %q, want %q", tc.ip, got, tc.want)
		}
	}
}

// TestRateLimiterSharesAnIPv6SiteAndEvictsIdleBuckets: an IPv6 site's
// /64s share its /56's and /48's allowance, which is less than the global
// one, so other clients still get theirs; when the buckets are full, the
// least recently used goes, and a client that keeps trying keeps its
// exhausted bucket however many new addresses come meanwhile.
func TestRateLimiterSharesAnIPv6SiteAndEvictsIdleBuckets(t *testing.T) {
	l := newRateLimiter(100, time.Hour, 2, 5)
	allowed := 0
	for p := range 8 {
		for i := range 3 {
			if l.allow(fmt.Sprintf("2001:db8:77:%x::%x", p, i+1)) {
				allowed++
			}
		}
	}
	if allowed != 4 {
		t.Fatalf("one /56 got %d of 24 from its 8 /64s, want its own burst of 4", allowed)
	}
	for _, ip := range []string{"198.51.100.7", "2001:db8:78::1"} {
		if !l.allow(ip) {
			t.Fatalf("%s refused after one IPv6 site spent its share", ip)
		}
	}

	l = newRateLimiter(50, time.Hour, 1, 1000)
	if !l.allow("203.0.113.1") || l.allow("203.0.113.1") {
		t.Fatal("burst of one")
	}
	for i := range 500 {
		l.allow(fmt.Sprintf("198.51.%d.%d", i/200, i%200+1))
		if l.allow("203.0.113.1") {
			t.Fatalf("after %d other addresses the exhausted address was allowed again: its bucket was dropped", i+1)
		}
	}
	l.mu.Lock()
	n := len(l.m)
	l.mu.Unlock()
	if n > 50 {
		t.Fatalf("%d buckets kept, want at most 50", n)
	}
}

func TestActivationCodeFormat(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		c, err := newActivationCode()
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != 11 || c[5] != '-' || normalActivationCode(c) != strings.ReplaceAll(c, "-", "") {
			t.Fatalf("code %q: want XXXXX-XXXXX of the alphabet", c)
		}
		if seen[c] {
			t.Fatalf("code %q issued twice in 200", c)
		}
		seen[c] = true
	}
	// 10 symbols of 32: 50 bits, above rev 4's 40 with the user's identifiers.
	if len(activationAlphabet) != 32 || activationLen*5 < 40 {
		t.Fatal("activation codes carry under 40 bits")
	}
	tests := []struct{ typed, want string }{
		{"ABCDE-FGHJK", "ABCDEFGHJK"},
		{" abcde fghjk ", "ABCDEFGHJK"},
		{"0O1IL-23456", "0011123456"}, // O reads as 0, I and L as 1
		{"ABCDE-FGHJ", ""},            // too short
		{"ABCDE-FGHJKM", ""},          // too long
		{"ABCDE-FGHJU", ""},           // U is not in the alphabet
		{"ＡBCDE-FGHJK", ""},           // full-width letters are not folded
		{"", ""},
	}
	for _, tc := range tests {
		if got := normalActivationCode(tc.typed); got != tc.want {
			t.Errorf("normalActivationCode(%q) = %q, want %q", tc.typed, got, tc.want)
		}
	}
	salt := []byte("0123456789abcdef")
	h := activationHash("1001/alice", "ABCDEFGHJK", salt)
	for _, other := range [][3]string{{"1001/bob", "ABCDEFGHJK", ""}, {"1001/alice", "ABCDEFGHJM", ""}, {"1001/alice", "ABCDEFGHJK", "x"}} {
		if string(activationHash(other[0], other[1], append(salt, other[2]...))) == string(h) {
			t.Errorf("hash of %v equals alice's", other)
		}
	}
}

func TestRetryDelayDoublesToTenMinutes(t *testing.T) {
	prev := time.Duration(0)
	for attempt := 1; attempt <= 30; attempt++ {
		d := retryDelay(attempt)
		base := min(time.Second<<min(attempt-1, 20), 10*time.Minute)
		if d < base || d > base+base/5 {
			t.Fatalf("retryDelay(%d) = %s, want %s plus at most a fifth", attempt, d, base)
		}
		if attempt <= 10 && d <= prev/2 {
			t.Fatalf("retryDelay(%d) = %s does not grow from %s", attempt, d, prev)
		}
		prev = d
	}
}

func TestNotificationIDsSortByTime(t *testing.T) {
	t0 := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	a, _ := notificationID(t0)
	b, _ := notificationID(t0.Add(time.Millisecond))
	c, _ := notificationID(t0.Add(time.Hour))
	if !(a < b && b < c) || !strings.HasPrefix(a, "evt_") || len(a) != 4+12+16 {
		t.Fatalf("ids %q %q %q: want evt_, time-ordered", a, b, c)
	}
}

// TestAuditAggregatorKeepsTheTrail: the first event of a key goes in at
// once, the rest of its window becomes one summary; keys beyond the bound
// share one entry; closing writes what is pending.
func TestAuditAggregatorKeepsTheTrail(t *testing.T) {
	log := NewMemoryAuditLog(0, 0, nil)
	e := &Engine{now: time.Now, log: slog.New(slog.NewTextHandler(io.Discard, nil)), cfg: Config{Audit: log, Metrics: NopMetrics{}}}
	a := newAuditAggregator(e, 200*time.Millisecond, 3)
	ctx := context.Background()
	ev := func(user, outcome, ip string) AuditEvent {
		return AuditEvent{Type: AuditEnrolment, User: user, Outcome: outcome, ClientIP: ip, Actor: "browser", Time: time.Now()}
	}
	a.add(ctx, "alice", ev("alice", "unknown_credential", "198.51.100.1"))
	for i := range 50 {
		a.add(ctx, "alice", ev("alice", map[bool]string{true: "bad_code", false: "unknown_credential"}[i%2 == 0], "198.51.100.2"))
	}
	if n := log.Len(); n != 1 {
		t.Fatalf("%d events after 51 of one key within a window, want 1", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for log.Len() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no summary after the window")
		}
		time.Sleep(10 * time.Millisecond)
	}
	evs, _ := log.Query(ctx, AuditQuery{User: "alice"})
	if len(evs) != 2 || evs[1].Outcome != "repeated" || !strings.Contains(evs[1].Detail, "50 more") ||
		!strings.Contains(evs[1].Detail, "bad_code 25, unknown_credential 25") || !strings.Contains(evs[1].Detail, "from 1 address") {
		t.Fatalf("summary: %+v", evs)
	}
	// A new window lets the next event in at once.
	a.add(ctx, "alice", ev("alice", "locked", ""))
	if n := log.Len(); n != 3 {
		t.Fatalf("%d events, want the first of the new window written", n)
	}
	// Three keys at most: a fourth and fifth share the overflow entry.
	for _, k := range []string{"bob", "carol", "dave", "erin", "frank"} {
		a.add(ctx, k, ev(k, "bad_code", ""))
		a.add(ctx, k, ev(k, "bad_code", ""))
	}
	a.close()
	evs, _ = log.Query(ctx, AuditQuery{Type: AuditEnrolment})
	var overflow *AuditEvent
	for i := range evs {
		if evs[i].Outcome == "repeated" && evs[i].User == "" {
			overflow = &evs[i]
		}
	}
	if overflow == nil || !strings.Contains(overflow.Detail, "bad_code") {
		t.Fatalf("no overflow summary in %+v", evs)
	}
	if len(evs) > 3+2+1+2+2 {
		t.Fatalf("%d events: the bound on keys did not hold", len(evs))
	}
}

// TestFullOutboxRefusesBindings: while nobody takes the outbox's messages
// and it is full, a binding (which could not be announced) is refused; a
// state change is still queued.
func TestFullOutboxRefusesBindings(t *testing.T) {
	defer func(n int) { maxOutbox = n }(maxOutbox)
	maxOutbox = 2
	store := NewMemoryStore(nil)
	defer store.Close()
	e, err := NewEngine(Config{Store: store, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	cred := &Credential{ID: "OPTESTCREDENTIAL", Platform: "none"}
	if err := store.PutCredential(ctx, cred); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"u1", "u2"} {
		if _, err := e.Bind(ctx, k, cred.ID, "clerk"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Bind(ctx, "u3", cred.ID, "clerk"); !errors.Is(err, ErrOutboxFull) {
		t.Fatalf("binding with a full outbox: %v, want ErrOutboxFull", err)
	}
	if u, err := store.GetUser(ctx, "u3"); err == nil && u.CredentialID != "" {
		t.Fatalf("u3 was bound without an announcement: %+v", u)
	}
	if _, err := e.Suspend(ctx, "u1", time.Now().Add(time.Hour), "clerk"); err != nil {
		t.Fatal(err)
	}
	if n, _ := store.NotificationBacklog(ctx); n != 3 {
		t.Fatalf("backlog %d, want the suspension queued past the bound", n)
	}
}

func TestPlausibleCredID(t *testing.T) {
	for id, want := range map[string]bool{
		"OPABCDEFGHIJKLMNOP":             true,
		"OP234567":                       true,
		"":                               false,
		"OP<SCRIPT>":                     false,
		"OPÄ":                            false,
		"OP ABC":                         false,
		strings.Repeat("A", 64):          true,
		strings.Repeat("A", 65):          false,
		"OPABC\r\nX-INJECTED: 1":         false,
		normalCredID("  opabcdefgh234 "): true,
	} {
		if got := plausibleCredID(id); got != want {
			t.Errorf("plausibleCredID(%q) = %v, want %v", id, got, want)
		}
	}
}

// TestAuditSummaryNamesTheFirstEventsTime: an event handed over without a
// time (a forged enrolment post) is stamped when it comes, so the summary
// of its window says when the flood began, not year 1.
func TestAuditSummaryNamesTheFirstEventsTime(t *testing.T) {
	log := NewMemoryAuditLog(0, 0, nil)
	e := &Engine{now: time.Now, log: slog.New(slog.NewTextHandler(io.Discard, nil)), cfg: Config{Audit: log, Metrics: NopMetrics{}}}
	a := newAuditAggregator(e, time.Hour, 10)
	ctx := context.Background()
	before := time.Now().UTC().Truncate(time.Second)
	for range 3 {
		a.add(ctx, "enrol-forged\x00alice", AuditEvent{Type: AuditEnrolment, User: "alice", Outcome: "forged", Actor: "browser"})
	}
	a.close()
	evs, _ := log.Query(ctx, AuditQuery{User: "alice"})
	if len(evs) != 2 || evs[1].Outcome != "repeated" {
		t.Fatalf("events = %+v, want the first and a summary", evs)
	}
	if first := evs[0].Time; first.Before(before) {
		t.Fatalf("the first event's time = %s", first)
	}
	if !strings.Contains(evs[1].Detail, "forged at "+evs[0].Time.UTC().Format(time.RFC3339)) {
		t.Fatalf("summary %q does not name the first event's time %s", evs[1].Detail, evs[0].Time)
	}
}

// TestActivationCodeValidityAcrossSites: one engine serves every site of a
// Caddy. An activation code the admin API issues is valid for the longest
// validity of its kind that a loaded policy allows; a site whose policy
// allows less refuses it once it is older than that there; a policy
// unloaded no longer counts.
func TestActivationCodeValidityAcrossSites(t *testing.T) {
	now := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	store := NewMemoryStore(clock)
	defer store.Close()
	e, err := NewEngine(Config{Store: store, Now: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	short, long := policy.DefaultEnrolment(), policy.DefaultEnrolment()
	short.RecoveryCodeValidity, long.RecoveryCodeValidity = 72*time.Hour, 336*time.Hour
	short.BindingCodeValidity = 5 * time.Minute
	dropShort := e.AddEnrolment(short)
	dropLong := e.AddEnrolment(long)
	ctx := context.Background()

	code, c, err := e.IssueActivationCode(ctx, "1001/alice", ActivationRecovery, "op")
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(336 * time.Hour); !c.ExpiresAt.Equal(want) {
		t.Fatalf("recovery code valid until %s, want %s (the longest loaded policy)", c.ExpiresAt, want)
	}
	now = now.Add(100 * time.Hour)
	if _, err := e.checkActivationCode(ctx, "1001/alice", code, short); !errors.Is(err, ErrBadActivationCode) {
		t.Fatalf("a 100 h old recovery code on the 72 h site: %v, want refused", err)
	}
	if _, err := e.checkActivationCode(ctx, "1001/alice", code, long); err != nil {
		t.Fatalf("a 100 h old recovery code on the 336 h site: %v", err)
	}

	// The long policy unloaded: codes now follow the short one.
	dropLong()
	if _, c, err = e.IssueActivationCode(ctx, "1001/bob", ActivationRecovery, "op"); err != nil || !c.ExpiresAt.Equal(now.Add(72*time.Hour)) {
		t.Fatalf("recovery code after the long policy went: %v %+v", err, c)
	}
	if _, c, err = e.IssueActivationCode(ctx, "1001/bob", ActivationBinding, "op"); err != nil || !c.ExpiresAt.Equal(now.Add(5*time.Minute)) {
		t.Fatalf("binding code: %v %+v", err, c)
	}
	dropShort()
	if _, c, err = e.IssueActivationCode(ctx, "1001/bob", ActivationRecovery, "op"); err != nil || !c.ExpiresAt.Equal(now.Add(policy.DefaultRecoveryCodeValidity)) {
		t.Fatalf("recovery code with no policy loaded: %v %+v", err, c)
	}
}

// deregisterOnAnnounce is a store on which the user's phone is
// deregistered (by the bank, on another instance) just after an enrolment
// has read the user's record and while its binding is being announced.
type deregisterOnAnnounce struct {
	*MemoryStore
	user string
	cred string
	once sync.Once
}

func (s *deregisterOnAnnounce) EnqueueNotification(ctx context.Context, n *Notification) error {
	s.once.Do(func() {
		_ = s.MemoryStore.PutUser(ctx, &User{Key: s.user, State: UserDeregistered, PreviousCredentialID: s.cred, Until: time.Now().Add(time.Hour)})
	})
	return s.MemoryStore.EnqueueNotification(ctx, n)
}

// TestEnrolDecidesTheProofOnTheRecordItChanges: a first phone is bound with
// the password alone only if the user still never had one when the
// binding is written; a phone deregistered meanwhile makes it a
// replacement, which takes an activation code.
func TestEnrolDecidesTheProofOnTheRecordItChanges(t *testing.T) {
	mem := NewMemoryStore(nil)
	defer mem.Close()
	store := &deregisterOnAnnounce{MemoryStore: mem, user: "1001/alice", cred: "OPOLDPHONE"}
	e, err := NewEngine(Config{Store: store, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	ctx := context.Background()
	cred, err := e.RegisterCredential(ctx, der, "none", "")
	if err != nil {
		t.Fatal(err)
	}
	code, err := totp.GenerateCode(cred.OTPSecret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Enroll(ctx, EnrolAttempt{User: "1001/alice", CredentialID: cred.ID, Code: code, PasswordProven: true,
		ClientIP: "198.51.100.1", Enrolment: policy.DefaultEnrolment()})
	if !errors.Is(err, ErrActivationRequired) {
		t.Fatalf("enrolment on the password alone of a user whose phone was deregistered meanwhile: %v, want %v", err, ErrActivationRequired)
	}
	if u, _ := mem.GetUser(ctx, "1001/alice"); u == nil || u.CredentialID != "" {
		t.Fatalf("alice after the refused enrolment: %+v", u)
	}
}

// TestActivationHashesAreBoundedByCores: however many enrolment posts with
// an activation code arrive at once, at most GOMAXPROCS Argon2id hashes
// (19 MiB each) are computed at a time.
func TestActivationHashesAreBoundedByCores(t *testing.T) {
	var mu sync.Mutex
	running, peak := 0, 0
	real := argonKey
	defer func() { argonKey = real }()
	argonKey = func(_, _ []byte, _, _ uint32, _ uint8, keyLen uint32) []byte {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		defer func() { mu.Lock(); running--; mu.Unlock() }()
		time.Sleep(20 * time.Millisecond)
		return make([]byte, keyLen)
	}
	var wg sync.WaitGroup
	for i := range 4 * cap(argonSlots) {
		wg.Go(func() { activationHash("1001/alice", fmt.Sprint(i), make([]byte, 16)) })
	}
	wg.Wait()
	if peak > cap(argonSlots) || cap(argonSlots) != max(1, runtime.GOMAXPROCS(0)) {
		t.Fatalf("%d hashes at once, want at most %d (GOMAXPROCS)", peak, runtime.GOMAXPROCS(0))
	}
}

// unackedFailures counts a failure but answers with an error, as a Redis
// primary does when its replicas do not acknowledge the count in time.
type unackedFailures struct{ *MemoryStore }

func (s unackedFailures) AddFailure(ctx context.Context, key string, limit int, lockNow bool, at time.Time) (*User, bool, error) {
	_, _, _ = s.MemoryStore.AddFailure(ctx, key, limit, lockNow, at)
	return nil, false, errors.New("the write was not acknowledged by enough replicas")
}

// TestUnacknowledgedLockIsAuditedAndAnnounced: a lock that AddFailure took
// although it answered an error exists all the same; it is audited and
// announced like any lock, once.
func TestUnacknowledgedLockIsAuditedAndAnnounced(t *testing.T) {
	ctx := context.Background()
	audit := NewMemoryAuditLog(0, 0, nil)
	st := unackedFailures{NewMemoryStore(nil)}
	e, err := NewEngine(Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Audit: audit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	if err := st.PutUser(ctx, &User{Key: "alice", CredentialID: "OPALICE", State: UserActive}); err != nil {
		t.Fatal(err)
	}
	var locked []bool
	for range 6 {
		locked = append(locked, e.recordFailure(ctx, "alice", "wrong security code", nil))
	}
	// Reported as not locked: unacknowledged, a failover may lose the lock,
	// so no browser is told "locked" (caddymodule TestSentinelFailover).
	if want := []bool{false, false, false, false, false, false}; fmt.Sprint(locked) != fmt.Sprint(want) {
		t.Errorf("recordFailure reported %v, want %v", locked, want)
	}
	evs, err := audit.Query(ctx, AuditQuery{User: "alice", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	lockEvents := 0
	for _, ev := range evs {
		if ev.Type == AuditStateChange && ev.Outcome == string(UserLocked) {
			lockEvents++
		}
	}
	msgs, err := st.ClaimNotifications(ctx, time.Now().Add(time.Hour), 10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, n := range msgs {
		types = append(types, n.Type)
	}
	if lockEvents != 1 || fmt.Sprint(types) != fmt.Sprint([]string{EventLocked}) {
		t.Errorf("the lock taken without acknowledgement: %d lock events audited, announcements %v; want 1 and [%s]", lockEvents, types, EventLocked)
	}
}
