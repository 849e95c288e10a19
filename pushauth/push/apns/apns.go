// Package apns sends challenge pushes to iOS apps through Apple's HTTP/2
// provider API (github.com/sideshow/apns2), with token or certificate auth.
package apns

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/push"
	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/certificate"
	"github.com/sideshow/apns2/payload"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"
)

// Defaults of Options.
const (
	DefaultCategory = "ONEPUSH_CHALLENGE"
	DefaultTitle    = "ログイン・取引の承認依頼 / Approval request"
)

// Options configures a Pusher. Exactly one of KeyFile (token auth) and
// CertFile (certificate auth) must be set.
type Options struct {
	// KeyFile is the .p8 signing key of token-based auth; KeyID and TeamID
	// name it and the developer team.
	KeyFile string
	KeyID   string
	TeamID  string
	// CertFile is a push certificate with its key, as .p12/.pfx (by file
	// extension) or PEM; CertPassword unlocks it.
	CertFile     string
	CertPassword string
	// Topic is the app's bundle ID.
	Topic string
	// Production selects api.push.apple.com; otherwise the sandbox.
	Production bool
	// Host overrides the APNs base URL (tests, fakes, proxies).
	Host string
	// Category is the aps.category the app registers its Approve/Deny
	// actions under. Default DefaultCategory.
	Category string
	// Title is the alert title shown on the lock screen. It must not carry
	// transaction details. Default DefaultTitle.
	Title string
	// Retry bounds the retries of 429, 5xx and transport errors.
	Retry push.RetryPolicy
	// RootCAs replaces the system roots for the APNs server (tests).
	RootCAs *x509.CertPool
}

// Pusher is a pushauth.Pusher for the "apns" platform. It is safe for
// concurrent use and keeps its HTTP/2 connection across pushes.
type Pusher struct {
	client   *apns2.Client
	topic    string
	category string
	title    string
	retry    push.RetryPolicy
}

var _ pushauth.Pusher = (*Pusher)(nil)

// New builds a Pusher. It reads the key or certificate now, so a bad file
// is a configuration error rather than a failed push later.
func New(opts Options) (*Pusher, error) {
	if opts.Topic == "" {
		return nil, errors.New("apns: topic (the app's bundle ID) is required")
	}
	var client *apns2.Client
	switch {
	case opts.KeyFile != "" && opts.CertFile != "":
		return nil, errors.New("apns: set key_file (token auth) or cert_file (certificate auth), not both")
	case opts.KeyFile != "":
		if opts.KeyID == "" || opts.TeamID == "" {
			return nil, errors.New("apns: token auth needs key_id and team_id")
		}
		key, err := token.AuthKeyFromFile(opts.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("apns: key_file: %w", err)
		}
		client = apns2.NewTokenClient(&token.Token{AuthKey: key, KeyID: opts.KeyID, TeamID: opts.TeamID})
	case opts.CertFile != "":
		var cert tls.Certificate
		var err error
		if ext := strings.ToLower(opts.CertFile); strings.HasSuffix(ext, ".p12") || strings.HasSuffix(ext, ".pfx") {
			cert, err = certificate.FromP12File(opts.CertFile, opts.CertPassword)
		} else {
			cert, err = certificate.FromPemFile(opts.CertFile, opts.CertPassword)
		}
		if err != nil {
			return nil, fmt.Errorf("apns: cert_file: %w", err)
		}
		client = apns2.NewClient(cert)
	default:
		return nil, errors.New("apns: set key_file, key_id and team_id (token auth) or cert_file (certificate auth)")
	}
	tr, ok := client.HTTPClient.Transport.(*http2.Transport)
	if !ok {
		return nil, fmt.Errorf("apns: unexpected transport %T", client.HTTPClient.Transport)
	}
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{}
	}
	tr.TLSClientConfig.MinVersion = tls.VersionTLS12
	if opts.RootCAs != nil {
		tr.TLSClientConfig.RootCAs = opts.RootCAs
	}
	switch {
	case opts.Host != "":
		client.Host = strings.TrimSuffix(opts.Host, "/")
	case opts.Production:
		client.Host = apns2.HostProduction
	default:
		client.Host = apns2.HostDevelopment
	}
	p := &Pusher{client: client, topic: opts.Topic, category: opts.Category, title: opts.Title, retry: opts.Retry}
	if p.category == "" {
		p.category = DefaultCategory
	}
	if p.title == "" {
		p.title = DefaultTitle
	}
	return p, nil
}

// Host is the APNs base URL the pusher talks to.
func (p *Pusher) Host() string { return p.client.Host }

// Close drops idle connections.
func (p *Pusher) Close() { p.client.CloseIdleConnections() }

// Push sends one alert push announcing challenge m to cred's device token.
// A token APNs no longer accepts yields an error wrapping
// pushauth.ErrDeadToken; 429, 5xx and transport errors are retried with
// backoff while ctx's deadline allows; other rejections are returned as is.
func (p *Pusher) Push(ctx context.Context, cred *pushauth.Credential, m pushauth.PushMessage) error {
	if cred.PushToken == "" {
		return fmt.Errorf("%w: credential has no APNs device token", pushauth.ErrDeadToken)
	}
	n := &apns2.Notification{
		DeviceToken: cred.PushToken,
		Topic:       p.topic,
		PushType:    apns2.PushTypeAlert,
		Priority:    apns2.PriorityHigh,
		Expiration:  m.ExpiresAt,
		CollapseID:  push.CollapseID(m.UserKey),
		// Only the challenge ID and kind: the app fetches what to show
		// over the authenticated device API.
		Payload: payload.NewPayload().
			AlertTitle(p.title).
			Category(p.category).
			Sound("default").
			Custom("challenge_id", m.ChallengeID).
			Custom("kind", m.Kind),
	}
	return p.retry.Do(ctx, func(attempt int) (bool, error) {
		res, err := p.client.PushWithContext(ctx, n)
		if err != nil {
			// A transport error is worth another try unless the
			// deadline itself cut the request.
			return ctx.Err() == nil, fmt.Errorf("apns push (attempt %d): %w", attempt, withoutURL(err))
		}
		return p.classify(res, attempt)
	})
}

// withoutURL drops the request URL, which holds the device token, from a
// transport error so logs do not collect tokens.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (p *Pusher) classify(res *apns2.Response, attempt int) (retryable bool, err error) {
	if res.StatusCode == http.StatusOK {
		return false, nil
	}
	err = fmt.Errorf("apns push (attempt %d): status %d %s", attempt, res.StatusCode, res.Reason)
	switch {
	case res.StatusCode == http.StatusGone,
		res.Reason == apns2.ReasonBadDeviceToken,
		res.Reason == apns2.ReasonUnregistered,
		res.Reason == apns2.ReasonExpiredToken,
		res.Reason == apns2.ReasonDeviceTokenNotForTopic:
		return false, fmt.Errorf("%w: apns status %d %s", pushauth.ErrDeadToken, res.StatusCode, res.Reason)
	case res.Reason == apns2.ReasonExpiredProviderToken && p.client.Token != nil && attempt == 1:
		// Apple thinks the provider token is stale (clock skew): sign a
		// fresh one and try once more.
		p.client.Token.Lock()
		p.client.Token.IssuedAt = 0
		p.client.Token.Unlock()
		return true, err
	case res.StatusCode == http.StatusTooManyRequests, res.StatusCode >= 500:
		return true, err
	default:
		return false, err
	}
}
