package pushauth

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/onepush/onepush/pushauth/ocra"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/time/rate"
)

// Platforms a credential may register with.
var platforms = map[string]bool{"apns": true, "fcm": true, "webhook": true, "none": true}

// RegisterCredential issues a credential ID and TOTP secret for a new app
// instance. The credential is useless until a user binds it, and is
// deleted if nobody does within Config.UnboundCredentialTTL.
func (e *Engine) RegisterCredential(ctx context.Context, publicKeyDER []byte, platform, pushToken string) (*Credential, error) {
	if _, err := parseP256(publicKeyDER); err != nil {
		return nil, fmt.Errorf("public_key: %w", err)
	}
	if !platforms[platform] {
		return nil, fmt.Errorf("platform %q: must be one of apns, fcm, webhook, none", platform)
	}
	if err := e.checkPushToken(platform, pushToken); err != nil {
		return nil, err
	}
	id, err := newCredentialID()
	if err != nil {
		return nil, err
	}
	var secret [20]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, err
	}
	ocraKey, err := ocra.NewKey()
	if err != nil {
		return nil, err
	}
	c := &Credential{
		ID:        id,
		PublicKey: publicKeyDER,
		Platform:  platform,
		PushToken: pushToken,
		OTPSecret: base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret[:]),
		OCRAKey:   ocraKey,
		CreatedAt: e.now(),
		ExpiresAt: e.now().Add(e.cfg.UnboundCredentialTTL),
	}
	if err := e.store.PutCredential(ctx, c); err != nil {
		return nil, fmt.Errorf("storing credential: %w", err)
	}
	e.log.Info("credential registered", "credential", id, "platform", platform)
	return c, nil
}

func (e *Engine) checkPushToken(platform, token string) error {
	if len(token) > 4096 {
		return errors.New("push_token: longer than 4096 bytes")
	}
	if platform == "webhook" {
		wp, ok := e.pusher("webhook").(interface{ Allowed(string) bool })
		if !ok {
			return errors.New("platform webhook: not enabled on this gateway")
		}
		if !wp.Allowed(token) {
			return fmt.Errorf("push_token %q: not under an allowed webhook prefix", token)
		}
	}
	return nil
}

// UpdatePushToken replaces a credential's push token and brings it out of
// poll mode.
func (e *Engine) UpdatePushToken(ctx context.Context, cred *Credential, platform, token string) error {
	if !platforms[platform] {
		return fmt.Errorf("platform %q: must be one of apns, fcm, webhook, none", platform)
	}
	if err := e.checkPushToken(platform, token); err != nil {
		return err
	}
	cred.Platform, cred.PushToken, cred.TokenDead = platform, token, false
	return e.store.PutCredential(ctx, cred)
}

// Uninstall invalidates a credential: it is deleted (its pending
// challenges can no longer be approved and expire), and every user bound
// to it becomes
// deregistered with grace until graceUntil, or for the policy's
// deregistration_grace when one is set (the policy wins).
func (e *Engine) Uninstall(ctx context.Context, cred *Credential, graceUntil time.Time) error {
	if d := e.DeregistrationGrace(0); d > 0 {
		graceUntil = e.now().Add(d)
	}
	users, err := e.store.UsersOfCredential(ctx, cred.ID)
	if err != nil {
		e.storeError("users_of_credential", err)
		return err
	}
	for _, key := range users {
		u, err := e.updateUser(ctx, key, func(u *User, exists bool) error {
			if !exists || u.CredentialID != cred.ID {
				return ErrNotFound
			}
			u.PreviousCredentialID = u.CredentialID
			u.CredentialID, u.State, u.Until, u.Failures = "", UserDeregistered, graceUntil, 0
			return nil
		})
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		detail := "app uninstalled; password-only until " + graceUntil.UTC().Format(time.RFC3339)
		e.audit(ctx, AuditEvent{Type: AuditStateChange, User: key, Credential: cred.ID, Outcome: string(u.State), Actor: "phone", Detail: detail})
		_ = e.announce(ctx, Announcement{Type: EventPhoneDeregistered, User: key, Credential: cred.ID, Actor: "phone", Detail: detail})
	}
	// Nobody can answer this phone's pending challenges any more: close
	// them now rather than keep their requests waiting to their timeout.
	pending, err := e.store.PendingForCredential(ctx, cred.ID)
	if err != nil {
		e.storeError("pending_for_credential", err)
		return err
	}
	for _, c := range pending {
		if _, err := e.finish(ctx, c.ID, StatusCancelled); err != nil {
			return err
		}
	}
	e.log.Info("credential uninstalled", "credential", cred.ID, "users", len(users), "cancelled", len(pending))
	if err := e.store.DeleteCredential(ctx, cred.ID); err != nil {
		e.storeError("delete_credential", err)
		return err
	}
	return nil
}

// ErrCodeUsed is CheckCode's answer for a right security code that was
// used before. It is refused, but it is no guess: only the customer (a
// retry, also of a code burnt by a call the store failed) or someone who
// saw the code can send it, so it does not count toward the lock.
var ErrCodeUsed = errors.New("security code was already used")

// CheckCode validates a 6-digit security code of cred and uses it up:
// true for a right code used for the first time, false for a wrong one
// (a guess: the caller counts it), ErrCodeUsed for a right one used
// before. Any other error means the store could not record the use
// (down, or replicas not acknowledging): no answer about the code, so
// the caller must not count it either.
func (e *Engine) CheckCode(ctx context.Context, cred *Credential, code string) (bool, error) {
	code = strings.TrimSpace(code)
	now := e.now()
	ok, err := totp.ValidateCustom(code, cred.OTPSecret, now, totp.ValidateOpts{
		Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil || !ok || !e.usableAfterFailover(cred, code, now) {
		return false, nil
	}
	// A code is accepted once: remember it for the whole ±1-step window.
	fresh, err := e.store.UseJTI(ctx, "otp/"+cred.ID+"/"+code, now.Add(2*time.Minute))
	if err != nil {
		e.storeError("use_jti", err)
		return false, fmt.Errorf("pushauth: recording the use of a security code of %s: %w", cred.ID, err)
	}
	if !fresh {
		return false, fmt.Errorf("%w (credential %s)", ErrCodeUsed, cred.ID)
	}
	return true, nil
}

// newCredentialID returns "OP" and 16 base32 characters (80 random bits):
// short enough to type from the phone into the PC form.
func newCredentialID() (string, error) {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "OP" + base32.StdEncoding.EncodeToString(b[:]), nil
}

// SessionHash is how a bank session cookie is stored: never the value.
func SessionHash(value string) string {
	h := sha256.Sum256([]byte("onepush-session\x00" + value))
	return hex.EncodeToString(h[:])
}

// ipLimiter bounds what one client may do (credential registrations,
// enrolment attempts) per instance, and everything together:
//
//   - each address — an IPv4 address, or the /64 of an IPv6 one (one host
//     is given a whole /64) — burst at once and one more every `every`;
//   - each IPv6 site, whose /64s share one allowance: its /56 (what a
//     household is given) twice that, its /48 (an office, a tunnel
//     broker's customer) three times that, refilled as much faster;
//   - all clients together perSecond, burst twice that, which is more than
//     the largest site's share: one site cannot spend it for everyone.
//
// A request is allowed only when every bucket it counts against has a
// token, and then takes one from each. At most max buckets are kept; the
// least recently used goes first, so a flood of new addresses evicts idle
// ones, never the buckets of the addresses and sites it comes from (a
// reset of all of them would undo the limit).
type ipLimiter struct {
	mu     sync.Mutex
	max    int
	every  time.Duration
	burst  int
	m      map[string]*list.Element // of *limiterEntry
	lru    *list.List               // most recently used first
	global *rate.Limiter
}

type limiterEntry struct {
	key string
	lim *rate.Limiter
}

// newRateLimiter allows each address burst at once and one more every
// every, an IPv6 site proportionally more (see ipLimiter), and all clients
// together perSecond (burst twice that).
func newRateLimiter(max int, every time.Duration, burst int, perSecond rate.Limit) *ipLimiter {
	return &ipLimiter{max: max, every: every, burst: burst, m: make(map[string]*list.Element), lru: list.New(),
		global: rate.NewLimiter(perSecond, 2*int(perSecond))}
}

// allow takes a token for clientIP (as Caddy's trusted proxies see it)
// from each of its buckets and the global one, or from none.
func (l *ipLimiter) allow(clientIP string) bool {
	keys := limiterKeys(clientIP)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	var lims [3]*rate.Limiter
	for i, k := range keys {
		lims[i] = l.bucket(k, i+1)
	}
	if l.global.TokensAt(now) < 1 {
		return false
	}
	for _, lim := range lims[:len(keys)] {
		if lim.TokensAt(now) < 1 {
			return false
		}
	}
	for _, lim := range lims[:len(keys)] {
		lim.AllowN(now, 1)
	}
	return l.global.AllowN(now, 1)
}

// bucket returns key's limiter, made for tier n (1 an address, 2 a /56,
// 3 a /48) when new, and marks it used.
func (l *ipLimiter) bucket(key string, n int) *rate.Limiter {
	if el, ok := l.m[key]; ok {
		l.lru.MoveToFront(el)
		return el.Value.(*limiterEntry).lim
	}
	lim := rate.NewLimiter(rate.Every(l.every/time.Duration(n)), l.burst*n)
	l.m[key] = l.lru.PushFront(&limiterEntry{key: key, lim: lim})
	for l.lru.Len() > l.max {
		old := l.lru.Back()
		l.lru.Remove(old)
		delete(l.m, old.Value.(*limiterEntry).key)
	}
	return lim
}

// limiterKeys are the buckets clientIP counts against: its address key
// (see addressKey) and, for IPv6, its /56 and /48.
func limiterKeys(ip string) []string {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Unmap().Is4() {
		return []string{addressKey(ip)}
	}
	a = a.WithZone("")
	keys := make([]string, 0, 3)
	for _, bits := range []int{64, 56, 48} {
		p, err := a.Prefix(bits)
		if err != nil {
			return []string{addressKey(ip)}
		}
		keys = append(keys, p.String())
	}
	return keys
}
