package pushauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// AuditNotification is the audit event of each delivery attempt.
const AuditNotification = "notification"

// DefaultRepudiation is the instruction a message carries unless the bank
// writes its own.
const DefaultRepudiation = "If you did not do this, contact the bank at once: it will remove the phone, lock the account's push authentication and help you recover it."

// Announced is signalled (without blocking) whenever a message enters the
// outbox, so the deliverer sends it at once rather than at its next poll.
func (e *Engine) Announced() <-chan struct{} { return e.announced }

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

// Announce puts a in the outbox. An error means the customer will not be
// told: callers that bind a phone refuse the binding then.
func (e *Engine) Announce(ctx context.Context, a Announcement) error {
	switch a.Type {
	case EventPhoneBound, EventPhoneReplaced, EventBindingRefused:
		if n, err := e.store.NotificationBacklog(ctx); err == nil && n >= maxOutbox {
			e.log.Error("customer notification not queued: the outbox is full", "type", a.Type, "user", a.User, "backlog", n)
			return fmt.Errorf("pushauth: %s of %q: %w", a.Type, a.User, ErrOutboxFull)
		}
	}
	n, err := a.Notification(e.now(), e.cfg.Repudiation)
	if err != nil {
		return err
	}
	if err := e.store.EnqueueNotification(context.WithoutCancel(ctx), n); err != nil {
		e.StoreFailed("enqueue_notification", err)
		e.log.Error("customer notification not queued", "type", a.Type, "user", a.User, "error", err)
		return fmt.Errorf("pushauth: queueing the %s notification of %q: %w", a.Type, a.User, err)
	}
	select {
	case e.announced <- struct{}{}:
	default:
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
