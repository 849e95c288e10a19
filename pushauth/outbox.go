package pushauth

import (
	"context"
	"time"
)

// Outbox keeps the notifications the bank's own notification system must
// receive (a phone bound, replaced or deregistered, a lock, a fraud
// report) until it has acknowledged them. Delivery is at least once: a
// message leaves the outbox only when acknowledged; one claimed and then
// neither acknowledged nor retried (the instance died mid-delivery) is due
// again when its lease ends. Messages are delivered in the order they fall
// due, then by ID; receivers de-duplicate by ID.
//
// A durable store keeps the outbox across restarts of the process. Nothing
// secret goes into a message (no codes, session ids or passwords), so a
// store need not seal them.
type Outbox interface {
	// EnqueueNotification adds n, due at n.Time. An ID already in the
	// outbox is ErrExists and changes nothing.
	EnqueueNotification(ctx context.Context, n *Notification) error
	// ClaimNotifications leases up to max messages due at now (oldest
	// due first, then by ID) for lease: until then no other claim returns
	// them. Each comes back with Attempts counted up and a Lease token
	// new to this claim.
	ClaimNotifications(ctx context.Context, now time.Time, max int, lease time.Duration) ([]*Notification, error)
	// AckNotification removes a delivered message; an unknown ID is not an
	// error (another instance delivered it too).
	AckNotification(ctx context.Context, id string) error
	// RetryNotification makes a claimed message due again at next and
	// records why delivery failed. When lease is no longer the message's
	// current lease (it ran out and another claim took the message), or the
	// message is gone, it returns ErrConflict and changes nothing.
	RetryNotification(ctx context.Context, id, lease string, next time.Time, lastErr string) error
	// NotificationBacklog counts the messages not acknowledged yet.
	NotificationBacklog(ctx context.Context) (int, error)
}

// Notification is one message of the outbox.
type Notification struct {
	// ID is unique and sorts by creation time; the receiver de-duplicates
	// by it.
	ID string `json:"id"`
	// Type is the event (EventPhoneBound …); User the user it concerns.
	Type string `json:"type"`
	User string `json:"user"`
	// Time is when the event happened and the message first fell due.
	Time time.Time `json:"time"`
	// Body is the exact JSON the receiver gets (and the signature covers),
	// fixed when the event happens so every retry sends the same bytes.
	Body []byte `json:"body"`
	// Attempts counts the claims so far, LastError says why the last
	// delivery failed.
	Attempts  int    `json:"attempts,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// Lease is the token of the claim that holds the message, set by
	// ClaimNotifications.
	Lease string `json:"lease,omitempty"`
}

// The events the bank's notification system is told about. Each message
// says how the customer can repudiate it.
const (
	// EventPhoneBound: a user's first phone was bound.
	EventPhoneBound = "phone.bound"
	// EventPhoneReplaced: a phone was bound to a user who had another.
	EventPhoneReplaced = "phone.replaced"
	// EventPhoneDeregistered: the binding was removed (the bank, or the
	// app uninstalled).
	EventPhoneDeregistered = "phone.deregistered"
	// EventSuspended: the bank suspended push authentication.
	EventSuspended = "user.suspended"
	// EventLocked: the user is locked after failures or a fraud report.
	EventLocked = "user.locked"
	// EventFraudReported: the phone reported a request as fraud.
	EventFraudReported = "fraud.reported"
	// EventBindingRefused: somebody tried to bind a phone to a user who
	// has or had one, without what the policy asks for (at most one such
	// message per user an hour).
	EventBindingRefused = "binding.refused"
)
