package pushauth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/onepush/onepush/pushauth/internal/limit"
)

// Pusher sends one push to one credential. The message carries only the
// challenge ID and kind; the app fetches details over the device API.
type Pusher interface {
	Push(ctx context.Context, cred *Credential, m PushMessage) error
}

// PushMessage is what a push may carry: nothing a lock screen should not show.
type PushMessage struct {
	ChallengeID string
	Kind        string
	// UserKey is for collapse IDs only; senders must not display it.
	UserKey   string
	ExpiresAt time.Time
}

// ErrDeadToken tells the engine the credential's push token no longer
// reaches the app; the credential falls back to poll mode until the app
// sends a new token.
var ErrDeadToken = errors.New("push token is no longer valid")

// dispatcher bounds outbound sends: a fixed set of workers draining a
// bounded queue, so a burst of challenges cannot open a burst of
// connections.
type dispatcher struct {
	e    *Engine
	jobs chan pushJob
	wg   sync.WaitGroup
	once sync.Once
	quit chan struct{}
}

type pushJob struct {
	cred *Credential
	c    *Challenge
	// kind, when set, is a notice about c rather than its prompt
	// (StoppedPushKind): sent as the message's kind, and c's push result
	// is left as it is.
	kind string
}

func newDispatcher(e *Engine, workers, queue int) *dispatcher {
	d := &dispatcher{e: e, jobs: make(chan pushJob, queue), quit: make(chan struct{})}
	for range workers {
		d.wg.Add(1)
		go d.work()
	}
	return d
}

func (d *dispatcher) enqueue(cred *Credential, c *Challenge) error {
	return d.enqueueJob(pushJob{cred: cred, c: c})
}

func (d *dispatcher) enqueueJob(j pushJob) error {
	if j.cred.Platform == "none" || j.cred.TokenDead || d.e.pusher(j.cred.Platform) == nil {
		d.e.recordPush(j, "poll")
		return nil
	}
	select {
	case d.jobs <- j:
		return nil
	default:
		d.e.recordPush(j, "queue_full")
		return ErrPushQueueFull
	}
}

func (d *dispatcher) work() {
	defer d.wg.Done()
	for {
		select {
		case <-d.quit:
			return
		case j := <-d.jobs:
			d.send(j)
		}
	}
}

func (d *dispatcher) send(j pushJob) {
	e := d.e
	if !e.now().Before(j.c.ExpiresAt) {
		e.recordPush(j, "expired_before_send")
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), j.c.ExpiresAt)
	defer cancel()
	p := e.pusher(j.cred.Platform)
	if p == nil {
		e.recordPush(j, "poll")
		return
	}
	kind := j.c.Kind
	if j.kind != "" {
		kind = j.kind
	}
	err := p.Push(ctx, j.cred, PushMessage{
		ChallengeID: j.c.ID, Kind: kind, UserKey: j.c.UserKey, ExpiresAt: j.c.ExpiresAt,
	})
	switch {
	case err == nil:
		e.recordPush(j, "sent")
	case errors.Is(err, ErrDeadToken):
		e.recordPush(j, "dead_token")
		e.markTokenDead(j.cred.ID)
	default:
		e.log.Warn("push failed", "challenge", j.c.ID, "credential", j.cred.ID, "platform", j.cred.Platform, "error", err)
		e.recordPush(j, "failed")
	}
}

func (d *dispatcher) close() {
	d.once.Do(func() { close(d.quit) })
	d.wg.Wait()
}

func (e *Engine) recordPush(j pushJob, result string) {
	c, cred := j.c, j.cred
	e.log.Debug("push", "challenge", c.ID, "kind", j.kind, "credential", cred.ID, "platform", cred.Platform, "result", result)
	if j.kind != "" {
		return // a notice: the challenge's own push result stands
	}
	if err := e.store.SetPushResult(context.Background(), c.ID, result); err != nil && !errors.Is(err, ErrNotFound) {
		e.log.Warn("recording push result", "challenge", c.ID, "error", err)
	}
}

func (e *Engine) markTokenDead(credID string) {
	ctx := context.Background()
	cred, err := e.store.GetCredential(ctx, credID)
	if err != nil {
		return
	}
	cred.TokenDead = true
	if err := e.store.PutCredential(ctx, cred); err != nil {
		e.log.Warn("marking push token dead", "credential", credID, "error", err)
	}
}

// ErrPushRateLimited refuses a push beyond the user's per-minute budget:
// a stolen password must not be able to bomb the phone until the user
// taps Approve to make it stop.
var ErrPushRateLimited = errors.New("too many approval requests for this user; try again in a minute")

// allowPush takes one of the user's PushRate slots for the current minute
// from clientIP's share: the budget is counted per user and client address
// (an IPv6 /64 as one, limit.AddressKey), so pushes asked from another
// address (someone ringing her phone) cannot use up the customer's own.
// The slots are single-use markers in the store, so the budget holds
// across every instance sharing it.
func (e *Engine) allowPush(ctx context.Context, userKey, clientIP string) error {
	now := e.now()
	window := now.Truncate(time.Minute)
	prefix := "push/" + userKey + "/" + limit.AddressKey(clientIP) + "/" + strconv.FormatInt(window.Unix(), 10) + "/"
	rate := int(e.pushRate.Load())
	for i := range rate {
		fresh, err := e.store.UseJTI(ctx, prefix+strconv.Itoa(i), window.Add(2*time.Minute))
		if err != nil {
			return fmt.Errorf("pushauth: push rate limit: %w", err)
		}
		if fresh {
			return nil
		}
	}
	e.log.Warn("push rate limit reached", "user", userKey, "client_ip", clientIP, "per_minute", rate)
	return ErrPushRateLimited
}
