// Package notify delivers the core's outbox (bindings, locks, fraud
// reports) to the bank's notification system as signed webhooks.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// Notifications are signed as Standard Webhooks (www.standardwebhooks.com)
// sign them, so a bank can verify them with that project's libraries or in
// a few lines of its own:
//
//	webhook-id:        <message id>
//	webhook-timestamp: <Unix seconds>
//	webhook-signature: v1,<base64(HMAC-SHA-256(key, id + "." + timestamp + "." + body))>
//
// key is the secret "whsec_<base64>" decoded. Verify is the
// receiving side.
const (
	HeaderID        = "Webhook-Id"
	HeaderTimestamp = "Webhook-Timestamp"
	HeaderSignature = "Webhook-Signature"
	// secretPrefix starts a notify secret.
	secretPrefix = "whsec_"
	// Tolerance is how far a notification's timestamp may be from
	// the receiver's clock.
	Tolerance = 5 * time.Minute
)

// ErrBadNotification is what Verify wraps for a message that
// is not the gateway's own, unaltered and recent.
var ErrBadNotification = errors.New("notification signature does not verify")

// ParseSecret decodes "whsec_<base64 of 24 to 64 bytes>"; generate
// one with `echo whsec_$(openssl rand -base64 32)`.
func ParseSecret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, secretPrefix)
	if !ok {
		return nil, fmt.Errorf("notify secret: must start with %q (whsec_ and base64 of 32 random bytes)", secretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("notify secret: not base64 after %q: %w", secretPrefix, err)
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("notify secret: %d bytes, want 24 to 64", len(key))
	}
	return key, nil
}

func signature(key []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%d.", id, ts)
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Verify checks a notification the gateway sent: signed with
// secret over its id, timestamp and exact body, and stamped within
// Tolerance of now. It returns the message id the receiver
// de-duplicates by.
func Verify(secret string, h http.Header, body []byte, now time.Time) (string, error) {
	key, err := ParseSecret(secret)
	if err != nil {
		return "", err
	}
	id, tsText := h.Get(HeaderID), h.Get(HeaderTimestamp)
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if id == "" || err != nil {
		return "", fmt.Errorf("%w: missing %s or %s", ErrBadNotification, HeaderID, HeaderTimestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > Tolerance || d < -Tolerance {
		return "", fmt.Errorf("%w: timestamp %d is %s away from now", ErrBadNotification, ts, d.Round(time.Second))
	}
	want := signature(key, id, ts, body)
	for _, sig := range strings.Fields(h.Get(HeaderSignature)) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return id, nil
		}
	}
	return "", fmt.Errorf("%w: no v1 signature over message %s matches", ErrBadNotification, id)
}

// Config is where and how the outbox is delivered.
type Config struct {
	// URL receives each message as a POST of its JSON body.
	URL string
	// Secret signs the messages ("whsec_…", see ParseSecret).
	Secret string
	// Timeout bounds one delivery. Default 10s.
	Timeout time.Duration
	// Client sends the messages. Default: a client that follows no
	// redirect.
	Client *http.Client
}

// Delivery tuning. A message is retried until it is delivered; the wait
// doubles from a second up to ten minutes.
const (
	notifyBatch      = 8
	notifyPoll       = time.Second
	notifyFirstRetry = time.Second
	notifyMaxRetry   = 10 * time.Minute
)

// Deliverer delivers an engine's outbox: it wakes on every new message and
// once a second, claims due messages with a lease longer than the delivery
// timeout and sends each, a batch at a time.
type Deliverer struct {
	e      *pushauth.Engine
	url    string
	key    []byte
	client *http.Client
	lease  time.Duration

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Start delivers e's outbox to c.URL until Close. Several gateways may
// deliver one shared outbox: each message is claimed by one at a time.
func Start(e *pushauth.Engine, c Config) (*Deliverer, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("notify url %q: must be an absolute http(s) URL", c.URL)
	}
	key, err := ParseSecret(c.Secret)
	if err != nil {
		return nil, err
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	client := c.Client
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	client = &http.Client{Transport: client.Transport, CheckRedirect: client.CheckRedirect, Jar: client.Jar, Timeout: timeout}
	n := &Deliverer{e: e, url: c.URL, key: key, client: client, lease: 3 * timeout,
		stop: make(chan struct{}), done: make(chan struct{})}
	go n.run()
	return n, nil
}

// Close stops delivering; a message being sent is left to its lease.
func (n *Deliverer) Close() {
	n.once.Do(func() { close(n.stop) })
	<-n.done
}

func (n *Deliverer) run() {
	defer close(n.done)
	t := time.NewTicker(notifyPoll)
	defer t.Stop()
	for {
		n.deliverDue()
		select {
		case <-n.stop:
			return
		case <-n.e.Announced():
		case <-t.C:
		}
	}
}

// deliverDue sends due messages, a batch at a time, until none is due.
func (n *Deliverer) deliverDue() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for ctx.Err() == nil {
		msgs, err := n.e.Store().ClaimNotifications(ctx, n.e.Now(), notifyBatch, n.lease)
		if err != nil {
			n.e.StoreFailed("claim_notifications", err)
			return
		}
		var wg sync.WaitGroup
		for _, m := range msgs {
			wg.Go(func() {
				n.deliver(ctx, m)
			})
		}
		wg.Wait()
		if len(msgs) < notifyBatch {
			return
		}
	}
}

func (n *Deliverer) deliver(ctx context.Context, m *pushauth.Notification) {
	status, err := n.post(ctx, m)
	if ctx.Err() != nil {
		return // stopping: the lease runs out and the next process delivers it
	}
	ev := pushauth.AuditEvent{Type: pushauth.AuditNotification, User: m.User, Actor: "gateway"}
	if err == nil {
		if aerr := n.e.Store().AckNotification(ctx, m.ID); aerr != nil {
			n.e.StoreFailed("ack_notification", aerr)
		}
		ev.Outcome, ev.Detail = "delivered", fmt.Sprintf("%s %s, attempt %d, status %d", m.Type, m.ID, m.Attempts, status)
		n.e.Record(ctx, ev)
		return
	}
	next := n.e.Now().Add(retryDelay(m.Attempts))
	if rerr := n.e.Store().RetryNotification(ctx, m.ID, m.Lease, next, err.Error()); rerr != nil && !errors.Is(rerr, pushauth.ErrConflict) {
		n.e.StoreFailed("retry_notification", rerr)
	}
	ev.Outcome = "failed"
	ev.Detail = fmt.Sprintf("%s %s, attempt %d: %v; next try %s", m.Type, m.ID, m.Attempts, err, next.UTC().Format(time.RFC3339))
	n.e.Logger().Warn("notification not delivered", "id", m.ID, "type", m.Type, "attempt", m.Attempts, "error", err)
	n.e.Record(ctx, ev)
}

// post sends one message; any answer but 2xx is a failure.
func (n *Deliverer) post(ctx context.Context, m *pushauth.Notification) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(m.Body))
	if err != nil {
		return 0, err
	}
	ts := n.e.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderID, m.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, signature(n.key, m.ID, ts, m.Body))
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("status %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}

// retryDelay is the wait after the attempt-th failed delivery: doubling
// from a second up to ten minutes, plus up to a fifth more so instances do
// not retry in step.
func retryDelay(attempt int) time.Duration {
	d := notifyMaxRetry
	if attempt >= 1 && attempt < 20 {
		d = min(notifyFirstRetry<<(attempt-1), notifyMaxRetry)
	}
	if j, err := rand.Int(rand.Reader, big.NewInt(int64(d/5)+1)); err == nil {
		d += time.Duration(j.Int64())
	}
	return d
}
