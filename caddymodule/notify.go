package caddymodule

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/onepush/onepush/pushauth/notify"
)

// NotifyConfig sends the outbox (a phone bound, replaced or deregistered,
// a suspension, a lock, a fraud report) to the bank's own notification
// system, which tells the customer by e-mail, SMS or letter. Each message
// is a POST of JSON signed as Standard Webhooks sign them
// (webhook-id, webhook-timestamp, webhook-signature: v1,<HMAC-SHA-256>),
// delivered at least once; the receiver de-duplicates by webhook-id.
type NotifyConfig struct {
	// URL receives the messages. Required.
	URL string `json:"url,omitempty"`

	// Secret signs the messages: "whsec_" and base64 of 32 random bytes
	// (`echo whsec_$(openssl rand -base64 32)`). Required; use a
	// placeholder such as {env.ONEPUSH_NOTIFY_SECRET}.
	Secret string `json:"secret,omitempty"`

	// Repudiation is the instruction every message carries for a
	// customer who did not do this (whom to call). Default: a generic one.
	Repudiation string `json:"repudiation,omitempty"`

	// Timeout bounds one delivery. Default 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// notifySettings is a NotifyConfig with its placeholders expanded: where
// the deliverer sends, and what the engine writes in every message.
type notifySettings struct {
	notify.Config
	Repudiation string
}

// config expands placeholders into the deliverer's config.
func (c *NotifyConfig) config(repl *caddy.Replacer) (*notifySettings, error) {
	o := *c
	if err := expand(repl, "notify", map[string]*string{"url": &o.URL, "secret": &o.Secret, "repudiation": &o.Repudiation}); err != nil {
		return nil, err
	}
	if o.URL == "" || o.Secret == "" {
		return nil, fmt.Errorf("onepush: notify: url and secret are required")
	}
	if _, err := notify.ParseSecret(o.Secret); err != nil {
		return nil, fmt.Errorf("onepush: %w", err)
	}
	return &notifySettings{Config: notify.Config{URL: o.URL, Secret: o.Secret, Timeout: time.Duration(o.Timeout)}, Repudiation: o.Repudiation}, nil
}

func (s *notifySettings) repudiation() string {
	if s == nil {
		return ""
	}
	return s.Repudiation
}
