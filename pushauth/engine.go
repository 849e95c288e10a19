package pushauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/onepush/onepush/pushauth/internal/limit"
	"github.com/onepush/onepush/pushauth/ocra"
)

// Config is what an Engine is built from. Zero values take the documented
// defaults.
type Config struct {
	Store Store
	// Pushers maps a credential platform ("apns", "fcm", "webhook") to its
	// sender. A platform without a sender, and "none", leave the phone to
	// poll.
	Pushers map[string]Pusher
	Now     func() time.Time
	Logger  *slog.Logger
	// Backstop is how often a held request re-reads its challenge in case a
	// notification was lost. Default 1s; none by default when the store
	// cannot lose a notification (it has ReliableWatch() true, as
	// MemoryStore), since 15,000 held requests re-reading every second cost
	// a third of a CPU for nothing.
	Backstop time.Duration
	// MaxHeld bounds the requests held at once by this engine. Default 50000.
	MaxHeld int
	// MaxHeldPerUser and MaxHeldPerIP bound the requests held at once for one user
	// and from one client IP (checked by Hold). Defaults 4 and 256.
	MaxHeldPerUser int
	MaxHeldPerIP   int
	// MaxPolls and MaxPollsPerIP bound the waiting pages' long polls
	// (Await), counted apart from held requests. Defaults 10000 and 256;
	// maxPollsPerChallenge is fixed.
	MaxPolls      int
	MaxPollsPerIP int
	// PushWorkers and PushQueue bound outbound push sends. Defaults 16, 4096.
	PushWorkers int
	PushQueue   int
	// TokenLeeway is the clock skew allowed on device tokens. Default 30s.
	TokenLeeway time.Duration
	// MaxFailures locks a user after that many consecutive failures
	// (denials, fraud reports, wrong codes). Default 5.
	MaxFailures int
	// PushRate is how many challenges (pushes, resends included) one user
	// may receive per minute; more are refused, against push bombing.
	// Default 5.
	PushRate int
	// PushStreak bounds the pushes one user gets since her last approval
	// (backoff and a 24-hour cap). Zero fields take the defaults.
	PushStreak PushStreakLimits
	// Retain keeps decided challenges readable (status, audit) this long
	// after expiry. Default 10m.
	Retain time.Duration
	// Audit keeps the audit trail. Default: the store's own when it has
	// one (the memory store: 30 days, 100000 events); required otherwise.
	Audit AuditLog
	// Metrics receives measurements. Default: NopMetrics.
	Metrics Metrics

	// Repudiation tells the customer what to do if they did not do what a
	// notification announces; every message carries it. Default:
	// DefaultRepudiation. The notify package delivers the outbox.
	Repudiation string
	// UnboundCredentialTTL is how long a registered credential lives while
	// no user has bound it. Default 15m.
	UnboundCredentialTTL time.Duration
	// MaxAuthenticationAge caps every challenge's timeout and voids an
	// approval not released within it of the challenge's creation.
	// Default and most MaxAuthentication (a larger value is taken as it).
	MaxAuthenticationAge time.Duration
}

// defaultUnboundCredentialTTL is how long a registered credential waits
// for a user to bind it.
const defaultUnboundCredentialTTL = 15 * time.Minute

// Engine creates challenges, holds waiters until their challenge is
// decided, and applies decisions from the device protocol.
type Engine struct {
	store   Store
	pushers atomic.Pointer[map[string]Pusher]
	now     func() time.Time
	log     *slog.Logger
	cfg     Config

	waiters   *waiters
	dispatch  *dispatcher
	stopWatch func()
	regLimit  *limit.Rate
	limits    *limit.Counter
	polls     *limit.Counter // long polls per challenge and per client IP
	orphans   *orphans       // challenges left pending by a store failure, see orphans.go

	policies      policySet          // the loaded policies, see AddPolicy
	refusals      *AuditAggregator   // refused and suspicious requests, see RecordAggregated
	aggregators   []*AuditAggregator // closed with the engine, see NewAuditAggregator
	aggregatorsMu sync.Mutex
	announced     chan struct{} // see Announced
	stopFailover  func()        // see failover.go

	// What Reconfigure changes while the engine runs.
	pushRate    atomic.Int64
	pushStreak  atomic.Pointer[PushStreakLimits]
	maxFailures atomic.Int64
	unboundTTL  atomic.Int64 // a time.Duration
	maxAuthAge  atomic.Int64 // a time.Duration, see Config.MaxAuthenticationAge

	drain drainState // see drain.go

	phoneBinder atomic.Pointer[PhoneBinder] // see dualcontrol.go
}

// Errors the gate turns into pages.
var (
	ErrTooManyHeld       = errors.New("too many requests are waiting for approval")
	ErrPushQueueFull     = errors.New("push queue is full")
	ErrAlreadyBound      = errors.New("user already has a bound credential")
	ErrBadCode           = errors.New("security code is wrong or was already used")
	ErrUnknownCredential = errors.New("unknown credential")
)

// NewEngine builds an engine on cfg.Store and starts its push workers and
// its store watch.
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.Store == nil {
		return nil, errors.New("pushauth: Config.Store is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Backstop <= 0 {
		cfg.Backstop = time.Second
		if r, ok := cfg.Store.(interface{ ReliableWatch() bool }); ok && r.ReliableWatch() {
			cfg.Backstop = 0 // every resolution reaches the waiters
		}
	}
	cfg.limitDefaults()
	if cfg.Audit == nil {
		s, ok := cfg.Store.(interface{ AuditLog() AuditLog })
		if !ok {
			return nil, errors.New("pushauth: Config.Audit is required with this store")
		}
		cfg.Audit = s.AuditLog()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NopMetrics{}
	}
	e := &Engine{
		store:    cfg.Store,
		now:      cfg.Now,
		log:      cfg.Logger,
		cfg:      cfg,
		waiters:  newWaiters(cfg.MaxHeld, cfg.MaxPolls),
		regLimit: limit.NewRate(10000, 6*time.Second, 20, 50),
		limits:   limit.NewCounter(cfg.MaxHeldPerUser, cfg.MaxHeldPerIP, "user", ErrTooManyHeldForUser, ErrTooManyHeldFromIP),
		polls:    newPollLimits(cfg.MaxPollsPerIP),
	}
	e.Reconfigure(cfg)
	e.orphans = newOrphans(e, time.Second)
	e.refusals = NewAuditAggregator(e)
	e.announced = make(chan struct{}, 1)
	e.SetPushers(cfg.Pushers)
	e.dispatch = newDispatcher(e, cfg.PushWorkers, cfg.PushQueue)
	stop, err := cfg.Store.Watch(e.waiters.wake)
	if err != nil {
		e.dispatch.close()
		e.closeAggregators()
		return nil, fmt.Errorf("pushauth: watching the store: %w", err)
	}
	e.stopWatch = stop
	e.stopFailover = func() {}
	if fs, ok := cfg.Store.(failoverSource); ok {
		e.stopFailover = fs.WatchFailover(e.failedOver)
	}
	return e, nil
}

// limitDefaults gives the zero numeric settings their documented defaults.
func (cfg *Config) limitDefaults() {
	if cfg.MaxHeld <= 0 {
		cfg.MaxHeld = 50000
	}
	if cfg.PushWorkers <= 0 {
		cfg.PushWorkers = 16
	}
	if cfg.PushQueue <= 0 {
		cfg.PushQueue = 4096
	}
	if cfg.TokenLeeway <= 0 {
		cfg.TokenLeeway = 30 * time.Second
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = 5
	}
	if cfg.MaxHeldPerUser <= 0 {
		cfg.MaxHeldPerUser = defaultMaxHeldPerUser
	}
	if cfg.MaxHeldPerIP <= 0 {
		cfg.MaxHeldPerIP = defaultMaxHeldPerIP
	}
	if cfg.MaxPolls <= 0 {
		cfg.MaxPolls = defaultMaxPolls
	}
	if cfg.MaxPollsPerIP <= 0 {
		cfg.MaxPollsPerIP = defaultMaxPollsPerIP
	}
	if cfg.PushRate <= 0 {
		cfg.PushRate = 5
	}
	if cfg.Retain <= 0 {
		cfg.Retain = 10 * time.Minute
	}
	if cfg.UnboundCredentialTTL <= 0 {
		cfg.UnboundCredentialTTL = defaultUnboundCredentialTTL
	}
	if cfg.MaxAuthenticationAge <= 0 || cfg.MaxAuthenticationAge > MaxAuthentication {
		cfg.MaxAuthenticationAge = MaxAuthentication
	}
}

// Reconfigure applies what a config reload may change on a running engine,
// whose held requests stay: the bounds on held requests and long polls,
// PushRate, MaxFailures, UnboundCredentialTTL and MaxAuthenticationAge
// (for challenges created from then on; zero values take the
// defaults). The rest of cfg is read once, when the engine starts.
func (e *Engine) Reconfigure(cfg Config) {
	cfg.limitDefaults()
	e.pushRate.Store(int64(cfg.PushRate))
	streak := cfg.PushStreak.withDefaults()
	e.pushStreak.Store(&streak)
	e.maxFailures.Store(int64(cfg.MaxFailures))
	e.unboundTTL.Store(int64(cfg.UnboundCredentialTTL))
	e.maxAuthAge.Store(int64(cfg.MaxAuthenticationAge))
	e.waiters.setBounds(cfg.MaxHeld, cfg.MaxPolls)
	e.limits.SetBounds(cfg.MaxHeldPerUser, cfg.MaxHeldPerIP)
	e.polls.SetBounds(maxPollsPerChallenge, cfg.MaxPollsPerIP)
}

// SetPushers replaces the push senders, e.g. after a config reload that
// kept the engine (and its held requests).
func (e *Engine) SetPushers(m map[string]Pusher) {
	cp := make(map[string]Pusher, len(m))
	for k, v := range m {
		if v != nil {
			cp[k] = &measuredPusher{e: e, platform: k, next: v}
		}
	}
	e.pushers.Store(&cp)
}

func (e *Engine) pusher(platform string) Pusher { return (*e.pushers.Load())[platform] }

// Store returns the engine's store.
func (e *Engine) Store() Store { return e.store }

// Now is the engine's clock.
func (e *Engine) Now() time.Time { return e.now() }

// Logger is where the engine logs; the gate and the APIs log beside it.
func (e *Engine) Logger() *slog.Logger { return e.log }

// Retention is how long a decided challenge stays readable after its
// expiry (Config.Retain): single-use marks about a challenge live as long.
func (e *Engine) Retention() time.Duration { return e.cfg.Retain }

// AllowRegistration reports whether a client address may register another
// device now; registrations are rate limited per address.
func (e *Engine) AllowRegistration(clientIP string) bool { return e.regLimit.Allow(clientIP) }

// Close stops the workers and the watch; held requests see their context end.
func (e *Engine) Close() error {
	e.stopWatch()
	e.stopFailover()
	e.dispatch.close()
	e.orphans.stop()
	e.closeAggregators()
	return nil
}

// ChallengeSpec is what the gate knows when it decides to challenge.
type ChallengeSpec struct {
	UserKey   string
	Rule      string
	Kind      string
	Display   []Field
	ClientIP  string
	UserAgent string
	Timeout   time.Duration
	// CodeDigits > 0 makes it a code-transfer challenge: a fresh random
	// code of that many digits the phone's approval must carry.
	CodeDigits int
	// Held (or Response) and BrowserHash are set by the interstitial
	// mode: the request to replay on approval, or the bank's answer to a
	// password-first login to hand over on approval.
	Held        *HeldRequest
	Response    *HeldResponse
	BrowserHash string

	// Service, Host and Transaction are shown on the phone (see Challenge);
	// SessionHash binds the challenge to the bank session it was started in.
	Service     string
	Host        string
	Transaction *Transaction
	SessionHash string

	// Batch and Rows: what a bulk, payroll or approved batch moves (see
	// Batch); the engine computes the count and the rows digest itself.
	Batch *Batch
	Rows  []Row
	// Passkey makes it a passkey challenge (passkeys.go): nothing is
	// pushed, and only an assertion of one of the user's passkeys over
	// the challenge context approves it.
	Passkey bool
}

// challengeContext is the JSON the phone shows and signs over. Service,
// host and the typed transaction are members of their own, so later
// features (transaction-bound codes, Secure Payment Confirmation, totals)
// read amount, currency and payee from them, never from display labels.
type challengeContext struct {
	ChallengeID string    `json:"challenge_id"`
	User        string    `json:"user"`
	Kind        string    `json:"kind"`
	Rule        string    `json:"rule"`
	Display     []Field   `json:"display"`
	ClientIP    string    `json:"client_ip,omitempty"`
	UserAgent   string    `json:"user_agent,omitempty"`
	CodeDigits  int       `json:"code_digits,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`

	Service     string       `json:"service,omitempty"`
	Host        string       `json:"host,omitempty"`
	Transaction *Transaction `json:"transaction,omitempty"`
	Batch       *Batch       `json:"batch,omitempty"`
	Method      string       `json:"method,omitempty"`
}

// Hold creates a challenge for an enrolled user, pushes it, and waits until
// it is decided, superseded, expired, or ctx ends (the client went away:
// the challenge is cancelled). It returns the challenge in its final state.
// started, when non-nil, is called once the challenge exists.
func (e *Engine) Hold(ctx context.Context, user *User, spec ChallengeSpec, started func(*Challenge)) (*Challenge, error) {
	// Every held request counts against its user's and its address's
	// share, whichever mode of the gate holds it.
	release, err := e.limits.Acquire(user.Key, spec.ClientIP)
	if err != nil {
		return nil, err
	}
	defer release()
	id, err := RandomID()
	if err != nil {
		return nil, err
	}
	// The waiter exists before the challenge, so no decision can slip by.
	w, err := e.waiters.add(id)
	if err != nil {
		return nil, err
	}
	defer e.waiters.remove(id, w)
	c, err := e.create(ctx, id, user, spec)
	if err != nil {
		return nil, err
	}
	e.cfg.Metrics.Held(1)
	defer e.cfg.Metrics.Held(-1)
	if started != nil {
		started(c)
	}
	if c.Status.Final() {
		return c, nil // stopped at once (concurrent approve-only challenges)
	}
	final, err := e.wait(ctx, w, c, true)
	if err != nil && !errors.Is(err, ErrDraining) {
		// The store failed: the request gets an error page, and the
		// challenge is closed once the store answers again, so the phone
		// stops offering it.
		e.orphans.add(c)
	}
	return final, err
}

// Start creates and pushes a challenge without waiting: the interstitial
// mode answers the browser with a waiting page and asks Await later.
func (e *Engine) Start(ctx context.Context, user *User, spec ChallengeSpec) (*Challenge, error) {
	id, err := RandomID()
	if err != nil {
		return nil, err
	}
	return e.create(ctx, id, user, spec)
}

// Await waits until challenge c is final or ctx ends, and returns its
// current state. Unlike Hold, ctx ending (a long-poll that timed out)
// leaves the challenge pending. Polls are bounded per challenge, per
// clientIP and in all (ErrTooManyPolls), apart from held requests.
func (e *Engine) Await(ctx context.Context, id, clientIP string) (*Challenge, error) {
	release, err := e.polls.Acquire(id, clientIP)
	if err != nil {
		return nil, err
	}
	defer release()
	w, err := e.waiters.addPoll(id)
	if err != nil {
		return nil, err
	}
	defer e.waiters.remove(id, w)
	c, err := e.store.GetChallenge(ctx, id)
	if err != nil {
		return nil, err
	}
	if c.Status.Final() {
		return c, nil
	}
	return e.wait(ctx, w, c, false)
}

func (e *Engine) create(ctx context.Context, id string, user *User, spec ChallengeSpec) (*Challenge, error) {
	if e.Draining() {
		return nil, ErrDraining
	}
	if !user.Enrolled() {
		return nil, fmt.Errorf("pushauth: user %q is not enrolled", user.Key)
	}
	cred, err := e.store.GetCredential(ctx, user.CredentialID)
	if err != nil {
		return nil, fmt.Errorf("pushauth: credential of user %q: %w", user.Key, err)
	}
	// Which other challenges of this user are live right now (see
	// concurrent.go and below)? Read before this one is stored, as the
	// store presents them: a challenge the store shows closed (created on a
	// primary that a failover replaced) or that this instance orphaned is
	// no live login.
	live, checkedAt := map[string]*Challenge{}, e.now()
	pending, err := e.store.PendingForCredential(ctx, cred.ID)
	if err != nil {
		e.StoreFailed("pending_for_credential", err)
		return nil, fmt.Errorf("pushauth: pending challenges of %q: %w", user.Key, err)
	}
	var mine []*Challenge
	for _, p := range pending {
		if p.UserKey != user.Key || p.Status != StatusPending {
			continue
		}
		mine = append(mine, p)
		if checkedAt.Before(p.ExpiresAt) && !e.orphans.has(p.ID) {
			live[p.ID] = p
		}
	}
	// Refused before it takes a push from anyone's budget; the store
	// checks again, atomically.
	if _, err := PendingRule(mine, &Challenge{CodeDigits: spec.CodeDigits, Method: spec.method(), CreatedAt: checkedAt}); err != nil {
		return nil, e.tooManyPending(ctx, user, cred, spec)
	}
	if err := e.allowPushFor(ctx, user.Key, spec); err != nil {
		return nil, err
	}
	now := e.now()
	maxAge := time.Duration(e.maxAuthAge.Load())
	if spec.Timeout > maxAge {
		spec.Timeout = maxAge
	}
	c := &Challenge{
		ID:           id,
		UserKey:      user.Key,
		CredentialID: cred.ID,
		Rule:         spec.Rule,
		Kind:         spec.Kind,
		Display:      spec.Display,
		ClientIP:     spec.ClientIP,
		UserAgent:    escapeUntrusted(spec.UserAgent, 256),
		CreatedAt:    now,
		ExpiresAt:    now.Add(spec.Timeout),
		Status:       StatusPending,
		BrowserHash:  spec.BrowserHash,
		Service:      spec.Service,
		Host:         spec.Host,
		Transaction:  spec.Transaction,
		SessionHash:  spec.SessionHash,
		VoidAt:       now.Add(maxAge),
	}
	c.Held, c.Response = spec.Held, spec.Response
	if err := bindBatch(c, spec.Batch, spec.Rows); err != nil {
		return nil, err
	}
	if spec.Transaction != nil && spec.Held != nil && !spec.Passkey {
		// A transaction on a waiting page: the offline fallback answers
		// this number over its payee and amount (PSD2 RTS art. 5).
		n, err := ocra.NewChallengeNumber()
		if err != nil {
			return nil, err
		}
		c.OCRAChallenge = n
	}
	if spec.Passkey {
		if err := passkeyChallenge(c); err != nil {
			return nil, err
		}
	}
	if spec.CodeDigits > 0 && !spec.Passkey {
		code, err := randomDigits(spec.CodeDigits)
		if err != nil {
			return nil, err
		}
		c.CodeDigits, c.Code = spec.CodeDigits, code
	}
	ctxJSON, err := json.Marshal(challengeContext{
		ChallengeID: id, User: user.Key, Kind: spec.Kind, Rule: spec.Rule,
		Service: spec.Service, Host: spec.Host, Transaction: spec.Transaction, Batch: c.Batch,
		Display: nonNil(spec.Display), ClientIP: spec.ClientIP, UserAgent: c.UserAgent,
		CodeDigits: c.CodeDigits, CreatedAt: now, ExpiresAt: c.ExpiresAt, Method: c.Method,
	})
	if err != nil {
		return nil, err
	}
	c.Context = string(ctxJSON)

	superseded, err := e.store.CreateChallenge(ctx, c, c.ExpiresAt.Add(e.cfg.Retain))
	if errors.Is(err, ErrTooManyPending) {
		return nil, e.tooManyPending(ctx, user, cred, spec)
	}
	if err != nil {
		e.StoreFailed("create_challenge", err)
		return nil, fmt.Errorf("pushauth: storing challenge: %w", err)
	}
	// Two challenges for one user at once, one of them approve-only (the
	// earlier held here or, for all this instance knows, by another): the
	// phone cannot tell the customer's approve-only prompt from an
	// attacker's, so an approval meant for one could release the other
	// (the supersede race). Both stop: the earlier are superseded by the
	// store, this one is closed before it is pushed, both browsers are
	// told to try again and the phone is told why. An orphan of this
	// instance (its request was answered with an error when the store
	// failed, and it could not be closed then) waits for nobody, and one
	// that had expired counts for nothing: then this one simply goes on.
	stopBoth := false
	for _, old := range superseded {
		e.log.Debug("challenge superseded", "challenge", old, "by", id, "user", user.Key)
		e.cfg.Metrics.ChallengeOutcome(spec.Rule, string(StatusSuperseded))
		e.Record(ctx, AuditEvent{Type: AuditSuperseded, User: user.Key, Credential: cred.ID, Challenge: old,
			ClientIP: spec.ClientIP, Outcome: string(StatusSuperseded), Actor: "gateway", Detail: "by " + id})
		if live[old] != nil && replacesPasskey(c, live[old]) {
			continue // replaced, not a collision (PendingRule)
		}
		if !e.orphans.take(old) && (live[old] != nil || e.startedSince(ctx, old, checkedAt)) {
			stopBoth = true
			e.tellStopped(cred, old, live[old], c)
		}
	}
	if stopBoth {
		// The caller sees this one as superseded whatever the store says
		// (a phone that listed it in the instant it was pending and
		// approved it releases nothing).
		e.log.Warn("concurrent challenges, one approve-only: both stopped", "challenge", id, "other", strings.Join(superseded, ","), "user", user.Key, "client_ip", spec.ClientIP)
		_, _ = e.store.Resolve(context.WithoutCancel(ctx), id, StatusSuperseded, false, e.now())
		e.cfg.Metrics.ChallengeOutcome(spec.Rule, string(StatusSuperseded))
		e.Record(ctx, AuditEvent{Type: AuditSuperseded, User: user.Key, Credential: cred.ID, Challenge: id, Rule: spec.Rule,
			ClientIP: spec.ClientIP, Outcome: string(StatusSuperseded), Actor: "gateway",
			Detail: "started while " + strings.Join(superseded, ", ") + " was pending: both stopped", Service: spec.Service, Host: spec.Host})
		c.Status = StatusSuperseded
		return c, nil
	}
	e.log.Debug("challenge created", "challenge", id, "user", user.Key, "rule", spec.Rule, "kind", spec.Kind, "client_ip", spec.ClientIP)
	e.cfg.Metrics.ChallengeOutcome(spec.Rule, "created")
	e.Record(ctx, AuditEvent{Type: AuditCreated, User: user.Key, Credential: cred.ID, Challenge: id, Rule: spec.Rule,
		ClientIP: spec.ClientIP, Outcome: string(StatusPending), Actor: "gateway", Detail: spec.Kind,
		Service: spec.Service, Host: spec.Host})
	if c.Method == MethodPasskey {
		return c, nil // nothing to push: the browser asks the passkey
	}
	if err := e.dispatch.enqueue(cred, c); err != nil {
		if errors.Is(err, ErrPushQueueFull) {
			e.cfg.Metrics.PushResult(cred.Platform, "queue_full")
		}
		// Nobody can be told about this challenge in time: close it rather
		// than hold the request to its timeout.
		_, _ = e.store.Resolve(context.WithoutCancel(ctx), id, StatusCancelled, false, e.now())
		return nil, err
	}
	return c, nil
}

// wait blocks until c is final. When ctx ends first, cancelOnDone closes
// the challenge as cancelled (the held client left); otherwise the current
// state is returned.
func (e *Engine) wait(ctx context.Context, w *waiter, c *Challenge, cancelOnDone bool) (*Challenge, error) {
	timer := time.NewTimer(c.ExpiresAt.Sub(e.now()))
	defer timer.Stop()
	var backstopC <-chan time.Time // nil (never) when the store's watch is reliable
	// A held request ends at the drain deadline, unless the challenge
	// keeps what it replays (interstitial): its waiting page can still be
	// approved through another instance.
	var drained <-chan struct{}
	if cancelOnDone && c.Held == nil && c.Response == nil {
		drained = e.drain.overCh()
	}
	if e.cfg.Backstop > 0 {
		backstop := time.NewTicker(e.cfg.Backstop)
		defer backstop.Stop()
		backstopC = backstop.C
	}
	for {
		select {
		case final := <-w.ch:
			if final != nil {
				return final, nil
			}
		case <-backstopC:
		case <-timer.C:
			return e.Finish(ctx, c.ID, StatusExpired)
		case <-drained:
			return e.drainDeadline(ctx, c.ID)
		case <-ctx.Done():
			if !cancelOnDone {
				return e.store.GetChallenge(context.WithoutCancel(ctx), c.ID)
			}
			return e.Finish(context.WithoutCancel(ctx), c.ID, StatusCancelled)
		}
		cur, err := e.store.GetChallenge(ctx, c.ID)
		if err != nil {
			if ctx.Err() != nil && cancelOnDone {
				return e.Finish(context.WithoutCancel(ctx), c.ID, StatusCancelled)
			}
			return nil, fmt.Errorf("pushauth: re-reading challenge %s: %w", c.ID, err)
		}
		if cur.Status.Final() {
			return cur, nil
		}
	}
}

// Finish closes a challenge the waiting side gave up on. A decision that
// won the race stands.
func (e *Engine) Finish(ctx context.Context, id string, to Status) (*Challenge, error) {
	cur, err := e.store.Resolve(ctx, id, to, false, e.now())
	if errors.Is(err, ErrConflict) {
		return cur, nil
	}
	if err != nil {
		e.StoreFailed("resolve", err)
		return nil, fmt.Errorf("pushauth: closing challenge %s as %s: %w", id, to, err)
	}
	e.log.Debug("challenge "+string(to), "challenge", id, "user", cur.UserKey, "rule", cur.Rule)
	e.challengeClosed(ctx, cur, "gateway")
	return cur, nil
}

func RandomID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("pushauth: reading randomness: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// escapeUntrusted makes text the bank does not own (the browser's user
// agent) safe to show on the phone: printable ASCII is kept and everything
// else is written as an escape (\u202E, \xFF), so a bidi override or a
// newline is seen, never obeyed. The result is at most n bytes.
func escapeUntrusted(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; {
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02X`, s[i])
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(byte(c))
		default:
			fmt.Fprintf(&b, `\u%04X`, c)
		}
		i += size
	}
	return truncate(b.String(), n)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func nonNil(f []Field) []Field {
	if f == nil {
		return []Field{}
	}
	return f
}

// startedSince reports whether challenge id was created at or after t (a
// login started concurrently with the caller's), or cannot be read.
func (e *Engine) startedSince(ctx context.Context, id string, t time.Time) bool {
	c, err := e.store.GetChallenge(ctx, id)
	return err != nil || !c.CreatedAt.Before(t)
}

// randomDigits is a uniformly random string of n decimal digits (leading
// zeros included) from crypto/rand.
func randomDigits(n int) (string, error) {
	if n <= 0 || n > 18 {
		return "", fmt.Errorf("pushauth: %d code digits", n)
	}
	max := big.NewInt(1)
	for range n {
		max.Mul(max, big.NewInt(10))
	}
	v, err := rand.Int(rand.Reader, max)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%0*d", n, v), nil
}
