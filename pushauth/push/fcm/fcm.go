// Package fcm sends challenge pushes to Android apps through Firebase Cloud
// Messaging HTTP v1 (firebase.google.com/go/v4 messaging).
package fcm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/errorutils"
	"firebase.google.com/go/v4/messaging"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/push"
	"google.golang.org/api/option"
)

// Options configures a Pusher.
type Options struct {
	// CredentialsFile is a service-account JSON key with the Firebase
	// Cloud Messaging API permission. Empty: Application Default
	// Credentials (GOOGLE_APPLICATION_CREDENTIALS, workload identity).
	CredentialsFile string
	// ProjectID is the Firebase project; empty takes the project_id of the
	// credentials.
	ProjectID string
	// Endpoint overrides the FCM v1 base URL, "https://fcm.googleapis.com/v1"
	// (tests, fakes, proxies).
	Endpoint string
	// HTTPClient, when set, carries every call as is: it replaces the
	// SDK's authenticated transport, so it must add credentials itself,
	// and CredentialsFile must be empty.
	HTTPClient *http.Client
	// Retry bounds this package's retries of 429 and 500 answers. 503 and
	// transport errors are retried by the SDK itself (see Push).
	Retry push.RetryPolicy
}

// Pusher is a pushauth.Pusher for the "fcm" platform, safe for concurrent
// use.
type Pusher struct {
	client *messaging.Client
	retry  push.RetryPolicy
}

var _ pushauth.Pusher = (*Pusher)(nil)

// New builds a Pusher. Credentials are read now; the first access token is
// fetched on the first push.
func New(ctx context.Context, opts Options) (*Pusher, error) {
	// The SDK keeps ctx for later token refreshes; the pusher must outlive
	// the (Caddy provisioning) context it was built in.
	ctx = context.WithoutCancel(ctx)
	var co []option.ClientOption
	switch {
	case opts.HTTPClient != nil && opts.CredentialsFile != "":
		return nil, errors.New("fcm: an HTTP client replaces the credentials file; set one of them")
	case opts.HTTPClient != nil:
		co = append(co, option.WithHTTPClient(opts.HTTPClient))
	case opts.CredentialsFile != "":
		co = append(co, option.WithAuthCredentialsFile(option.ServiceAccount, opts.CredentialsFile))
	}
	if opts.Endpoint != "" {
		co = append(co, option.WithEndpoint(strings.TrimSuffix(opts.Endpoint, "/")))
	}
	var cfg *firebase.Config
	if opts.ProjectID != "" {
		cfg = &firebase.Config{ProjectID: opts.ProjectID}
	}
	app, err := firebase.NewApp(ctx, cfg, co...)
	if err != nil {
		return nil, fmt.Errorf("fcm: %w", err)
	}
	client, err := app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("fcm: %w", err)
	}
	return &Pusher{client: client, retry: opts.Retry}, nil
}

// Push sends one high-priority data message announcing challenge m to
// cred's registration token, with a TTL of the challenge's remaining
// validity and a per-user collapse key.
//
// Errors: UNREGISTERED, SENDER_ID_MISMATCH and INVALID_ARGUMENT on the
// token wrap pushauth.ErrDeadToken. The SDK's own HTTP client already
// retries 503 and transport errors (up to 4 retries after 0s, 1s, 2s, 4s,
// cut short by ctx), so this package does not retry those again; it
// retries 429 (QUOTA_EXCEEDED) and 500 (INTERNAL) with its RetryPolicy,
// never past ctx's deadline. Anything else is returned as is.
func (p *Pusher) Push(ctx context.Context, cred *pushauth.Credential, m pushauth.PushMessage) error {
	if cred.PushToken == "" {
		return fmt.Errorf("%w: credential has no FCM registration token", pushauth.ErrDeadToken)
	}
	collapse := push.CollapseID(m.UserKey)
	return p.retry.Do(ctx, func(attempt int) (bool, error) {
		ttl := time.Until(m.ExpiresAt)
		if m.ExpiresAt.IsZero() {
			ttl = 0
		} else if ttl <= 0 {
			return false, errors.New("fcm push: the challenge expired before the send")
		}
		msg := &messaging.Message{
			Token: cred.PushToken,
			// Only the challenge ID and kind: the app fetches what to
			// show over the authenticated device API.
			Data: map[string]string{"challenge_id": m.ChallengeID, "kind": m.Kind},
			Android: &messaging.AndroidConfig{
				Priority:    "high",
				CollapseKey: collapse,
			},
		}
		if ttl > 0 {
			ttl = ttl.Truncate(time.Millisecond)
			msg.Android.TTL = &ttl
		}
		_, err := p.client.Send(ctx, msg)
		if err == nil {
			return false, nil
		}
		dead, retry := classify(err)
		if dead {
			return false, fmt.Errorf("%w: fcm: %v", pushauth.ErrDeadToken, err)
		}
		return retry && ctx.Err() == nil, fmt.Errorf("fcm push (attempt %d): %w", attempt, err)
	})
}

// classify sorts an FCM error: dead reports a registration token that will
// never work again, retry a failure this package retries.
func classify(err error) (dead, retry bool) {
	switch {
	case messaging.IsUnregistered(err), messaging.IsSenderIDMismatch(err):
		return true, false
	case messaging.IsInvalidArgument(err), errorutils.IsInvalidArgument(err):
		return invalidToken(err), false
	case messaging.IsQuotaExceeded(err), errorutils.IsResourceExhausted(err),
		messaging.IsInternal(err), errorutils.IsInternal(err):
		return false, true
	}
	// UNAVAILABLE and transport errors: already retried by the SDK.
	return false, false
}

// invalidToken reports whether an INVALID_ARGUMENT answer is about the
// registration token (a BadRequest field violation on message.token, or
// FCM's message for a malformed token) rather than about the message.
func invalidToken(err error) bool {
	if resp := errorutils.HTTPResponse(err); resp != nil && resp.Body != nil {
		var body struct {
			Error struct {
				Details []struct {
					Type            string `json:"@type"`
					FieldViolations []struct {
						Field string `json:"field"`
					} `json:"fieldViolations"`
				} `json:"details"`
			} `json:"error"`
		}
		if json.NewDecoder(resp.Body).Decode(&body) == nil {
			for _, d := range body.Error.Details {
				for _, v := range d.FieldViolations {
					if v.Field == "message.token" {
						return true
					}
				}
			}
		}
	}
	return strings.Contains(strings.ToLower(err.Error()), "registration token")
}
