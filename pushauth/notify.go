package pushauth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
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
)

// Notifications are signed as Standard Webhooks (www.standardwebhooks.com)
// sign them, so a bank can verify them with that project's libraries or in
// a few lines of its own:
//
//	webhook-id:        <message id>
//	webhook-timestamp: <Unix seconds>
//	webhook-signature: v1,<base64(HMAC-SHA-256(key, id + "." + timestamp + "." + body))>
//
// key is the secret "whsec_<base64>" decoded. VerifyNotification is the
// receiving side.
const (
	HeaderNotifyID        = "Webhook-Id"
	HeaderNotifyTimestamp = "Webhook-Timestamp"
	HeaderNotifySignature = "Webhook-Signature"
	// notifySecretPrefix starts a notify secret.
	notifySecretPrefix = "whsec_"
	// NotifyTolerance is how far a notification's timestamp may be from
	// the receiver's clock.
	NotifyTolerance = 5 * time.Minute
)

// AuditNotification is the audit event of each delivery attempt.
const AuditNotification = "notification"

// ErrBadNotification is what VerifyNotification wraps for a message that
// is not the gateway's own, unaltered and recent.
var ErrBadNotification = errors.New("notification signature does not verify")

// ParseNotifySecret decodes "whsec_<base64 of 24 to 64 bytes>"; generate
// one with `echo whsec_$(openssl rand -base64 32)`.
func ParseNotifySecret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, notifySecretPrefix)
	if !ok {
		return nil, fmt.Errorf("notify secret: must start with %q (whsec_ and base64 of 32 random bytes)", notifySecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("notify secret: not base64 after %q: %w", notifySecretPrefix, err)
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("notify secret: %d bytes, want 24 to 64", len(key))
	}
	return key, nil
}

func notifySignature(key []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%d.", id, ts)
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// VerifyNotification checks a notification the gateway sent: signed with
// secret over its id, timestamp and exact body, and stamped within
// NotifyTolerance of now. It returns the message id the receiver
// de-duplicates by.
func VerifyNotification(secret string, h http.Header, body []byte, now time.Time) (string, error) {
	key, err := ParseNotifySecret(secret)
	if err != nil {
		return "", err
	}
	id, tsText := h.Get(HeaderNotifyID), h.Get(HeaderNotifyTimestamp)
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if id == "" || err != nil {
		return "", fmt.Errorf("%w: missing %s or %s", ErrBadNotification, HeaderNotifyID, HeaderNotifyTimestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > NotifyTolerance || d < -NotifyTolerance {
		return "", fmt.Errorf("%w: timestamp %d is %s away from now", ErrBadNotification, ts, d.Round(time.Second))
	}
	want := notifySignature(key, id, ts, body)
	for _, sig := range strings.Fields(h.Get(HeaderNotifySignature)) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return id, nil
		}
	}
	return "", fmt.Errorf("%w: no v1 signature over message %s matches", ErrBadNotification, id)
}

// NotifyConfig is where and how the outbox is delivered.
type NotifyConfig struct {
	// URL receives each message as a POST of its JSON body.
	URL string
	// Secret signs the messages ("whsec_…", see ParseNotifySecret).
	Secret string
	// Repudiation tells the customer what to do if they did not do this;
	// every message carries it. Default: DefaultRepudiation.
	Repudiation string
	// Timeout bounds one delivery. Default 10s.
	Timeout time.Duration
	// Client sends the messages. Default: a client that follows no
	// redirect.
	Client *http.Client
}

// DefaultRepudiation is the instruction a message carries unless the bank
// writes its own.
const DefaultRepudiation = "If you did not do this, contact the bank at once: it will remove the phone, lock the account's push authentication and help you recover it."

// Delivery tuning. A message is retried until it is delivered; the wait
// doubles from a second up to ten minutes.
const (
	notifyBatch      = 8
	notifyPoll       = time.Second
	notifyFirstRetry = time.Second
	notifyMaxRetry   = 10 * time.Minute
	// notifyRefusedEvery bounds binding.refused messages per user.
	notifyRefusedEvery = time.Hour
)

// notifier delivers the outbox: it wakes on every new message and once a
// second, claims due messages with a lease longer than the delivery
// timeout and sends each, a batch at a time.
type notifier struct {
	e      *Engine
	url    string
	key    []byte
	client *http.Client
	lease  time.Duration

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func newNotifier(e *Engine, c *NotifyConfig) (*notifier, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("notify url %q: must be an absolute http(s) URL", c.URL)
	}
	key, err := ParseNotifySecret(c.Secret)
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
	return &notifier{e: e, url: c.URL, key: key, client: client, lease: 3 * timeout,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}, nil
}

func (n *notifier) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) close() {
	n.once.Do(func() { close(n.stop) })
	<-n.done
}

func (n *notifier) run() {
	defer close(n.done)
	t := time.NewTicker(notifyPoll)
	defer t.Stop()
	for {
		n.deliverDue()
		select {
		case <-n.stop:
			return
		case <-n.wake:
		case <-t.C:
		}
	}
}

// deliverDue sends due messages, a batch at a time, until none is due.
func (n *notifier) deliverDue() {
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
		msgs, err := n.e.store.ClaimNotifications(ctx, n.e.now(), notifyBatch, n.lease)
		if err != nil {
			n.e.StoreFailed("claim_notifications", err)
			return
		}
		var wg sync.WaitGroup
		for _, m := range msgs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n.deliver(ctx, m)
			}()
		}
		wg.Wait()
		if len(msgs) < notifyBatch {
			return
		}
	}
}

func (n *notifier) deliver(ctx context.Context, m *Notification) {
	status, err := n.post(ctx, m)
	if ctx.Err() != nil {
		return // stopping: the lease runs out and the next process delivers it
	}
	ev := AuditEvent{Type: AuditNotification, User: m.User, Actor: "gateway"}
	if err == nil {
		if aerr := n.e.store.AckNotification(ctx, m.ID); aerr != nil {
			n.e.StoreFailed("ack_notification", aerr)
		}
		ev.Outcome, ev.Detail = "delivered", fmt.Sprintf("%s %s, attempt %d, status %d", m.Type, m.ID, m.Attempts, status)
		n.e.Record(ctx, ev)
		return
	}
	next := n.e.now().Add(retryDelay(m.Attempts))
	if rerr := n.e.store.RetryNotification(ctx, m.ID, m.Lease, next, err.Error()); rerr != nil && !errors.Is(rerr, ErrConflict) {
		n.e.StoreFailed("retry_notification", rerr)
	}
	ev.Outcome = "failed"
	ev.Detail = fmt.Sprintf("%s %s, attempt %d: %v; next try %s", m.Type, m.ID, m.Attempts, err, next.UTC().Format(time.RFC3339))
	n.e.log.Warn("notification not delivered", "id", m.ID, "type", m.Type, "attempt", m.Attempts, "error", err)
	n.e.Record(ctx, ev)
}

// post sends one message; any answer but 2xx is a failure.
func (n *notifier) post(ctx context.Context, m *Notification) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(m.Body))
	if err != nil {
		return 0, err
	}
	ts := n.e.now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderNotifyID, m.ID)
	req.Header.Set(HeaderNotifyTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderNotifySignature, notifySignature(n.key, m.ID, ts, m.Body))
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

// Announcement is one event the customer is told about.
type Announcement struct {
	Type               string
	User               string
	Credential         string
	PreviousCredential string
	// Via is how a binding was proven: password, binding_code,
	// recovery_code, support.
	Via      string
	ClientIP string
	Actor    string
	Detail   string
}

// notificationBody is the JSON a receiver gets. It names what happened, to
// whom and from where, never a code, session or password.
type notificationBody struct {
	ID                 string    `json:"id"`
	Type               string    `json:"type"`
	Time               time.Time `json:"time"`
	User               string    `json:"user"`
	CredentialID       string    `json:"credential_id,omitempty"`
	PreviousCredential string    `json:"previous_credential_id,omitempty"`
	Via                string    `json:"via,omitempty"`
	ClientIP           string    `json:"client_ip,omitempty"`
	Actor              string    `json:"actor,omitempty"`
	Detail             string    `json:"detail,omitempty"`
	Repudiation        string    `json:"repudiation"`
}

// maxOutbox bounds the outbox while the bank's notification system does
// not take its messages: past it, bindings are refused (they could not be
// announced) and binding.refused notices are dropped; state changes (a
// lock, a deregistration) are still queued, at most one per user and
// change.
var maxOutbox = 100000

// ErrOutboxFull refuses a binding that could not be announced.
var ErrOutboxFull = errors.New("the notification outbox is full: the bank's notification system is not taking messages")

// announce puts a in the outbox. An error means the customer will not be
// told: callers that bind a phone refuse the binding then.
func (e *Engine) announce(ctx context.Context, a Announcement) error {
	switch a.Type {
	case EventPhoneBound, EventPhoneReplaced, EventBindingRefused:
		if n, err := e.store.NotificationBacklog(ctx); err == nil && n >= maxOutbox {
			e.log.Error("customer notification not queued: the outbox is full", "type", a.Type, "user", a.User, "backlog", n)
			return fmt.Errorf("pushauth: %s of %q: %w", a.Type, a.User, ErrOutboxFull)
		}
	}
	n, err := a.Notification(e.now(), e.repudiation)
	if err != nil {
		return err
	}
	if err := e.store.EnqueueNotification(context.WithoutCancel(ctx), n); err != nil {
		e.StoreFailed("enqueue_notification", err)
		e.log.Error("customer notification not queued", "type", a.Type, "user", a.User, "error", err)
		return fmt.Errorf("pushauth: queueing the %s notification of %q: %w", a.Type, a.User, err)
	}
	if e.notifier != nil {
		e.notifier.poke()
	}
	return nil
}

// Notification is the outbox message of a, happening at now: a fresh id
// that sorts by time and the exact body the receiver gets, carrying
// repudiation (DefaultRepudiation when empty). The engine announces
// through it; so does a tool that changes bindings without an engine (a
// restore of the embedded store).
func (a Announcement) Notification(now time.Time, repudiation string) (*Notification, error) {
	if repudiation == "" {
		repudiation = DefaultRepudiation
	}
	id, err := notificationID(now)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(notificationBody{ID: id, Type: a.Type, Time: now.UTC(), User: a.User,
		CredentialID: a.Credential, PreviousCredential: a.PreviousCredential, Via: a.Via,
		ClientIP: a.ClientIP, Actor: a.Actor, Detail: a.Detail, Repudiation: repudiation})
	if err != nil {
		return nil, err
	}
	return &Notification{ID: id, Type: a.Type, User: a.User, Time: now, Body: body}, nil
}

// notificationID is unique and sorts by time: "evt_", 12 hex digits of
// Unix milliseconds, 16 random hex digits.
func notificationID(now time.Time) (string, error) {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("pushauth: reading randomness: %w", err)
	}
	return fmt.Sprintf("evt_%012x%s", now.UnixMilli(), hex.EncodeToString(r[:])), nil
}
