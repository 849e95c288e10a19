package caddymodule

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/caddyserver/caddy/v2"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/push/apns"
	"github.com/onepush/onepush/pushauth/push/fcm"
	"github.com/onepush/onepush/pushauth/push/webhook"
)

func init() {
	caddy.RegisterModule(APNsPusher{})
	caddy.RegisterModule(FCMPusher{})
	caddy.RegisterModule(WebhookPusher{})
}

// APNsPusher sends the "apns" push platform's pushes (iOS apps) through Apple's
// HTTP/2 provider API. Use token auth (key_file, key_id, team_id) or
// certificate auth (cert_file, cert_password). String fields may hold
// Caddy placeholders such as {env.APNS_KEY_ID}, expanded at provisioning;
// a placeholder that is unknown or empty is an error.
type APNsPusher struct {
	// KeyFile is the path of the .p8 signing key from the Apple developer
	// account (token auth).
	KeyFile string `json:"key_file,omitempty"`

	// KeyID is the 10-character ID of that key (token auth).
	KeyID string `json:"key_id,omitempty"`

	// TeamID is the 10-character Apple developer team ID (token auth).
	TeamID string `json:"team_id,omitempty"`

	// CertFile is the path of an APNs push certificate with its private
	// key: .p12/.pfx, or PEM with certificate and key in one file
	// (certificate auth).
	CertFile string `json:"cert_file,omitempty"`

	// CertPassword unlocks CertFile; use a placeholder such as
	// {env.APNS_CERT_PASSWORD} rather than the secret itself.
	CertPassword string `json:"cert_password,omitempty"`

	// Topic is the app's bundle ID. Required.
	Topic string `json:"topic,omitempty"`

	// Production sends to api.push.apple.com; false (default) sends to the
	// sandbox, api.sandbox.push.apple.com, which development builds use.
	Production bool `json:"production,omitempty"`

	// Host overrides the APNs base URL, e.g. for a test server or an
	// egress proxy. Takes precedence over Production.
	Host string `json:"host,omitempty"`

	// Category is the aps.category the app registers its Approve/Deny
	// notification actions under. Default "ONEPUSH_CHALLENGE".
	Category string `json:"category,omitempty"`

	// Title is the alert title on the lock screen; it must not carry
	// transaction details. Default "ログイン・取引の承認依頼 / Approval request".
	Title string `json:"title,omitempty"`

	// CAFile is a PEM bundle of roots to trust for Host instead of the
	// system's (an APNs proxy inside the bank with its own CA).
	CAFile string `json:"ca_file,omitempty"`

	sender *apns.Pusher
}

// FCMPusher sends the "fcm" push platform's pushes (Android apps) through
// Firebase Cloud Messaging HTTP v1. String fields may hold Caddy
// placeholders such as {env.FCM_CREDENTIALS}, expanded at provisioning.
type FCMPusher struct {
	// CredentialsFile is the path of a service-account JSON key allowed to
	// send FCM messages. Empty: Application Default Credentials
	// (GOOGLE_APPLICATION_CREDENTIALS or the platform's workload identity).
	CredentialsFile string `json:"credentials_file,omitempty"`

	// ProjectID is the Firebase project ID. Default: the project_id of the
	// credentials.
	ProjectID string `json:"project_id,omitempty"`

	// Endpoint overrides the FCM v1 base URL
	// (https://fcm.googleapis.com/v1), e.g. for a test server or a proxy.
	Endpoint string `json:"endpoint,omitempty"`

	sender pushauth.Pusher
}

// expand replaces placeholders in each field, failing on unknown or empty
// ones so a missing secret is a config error, not a failed push.
func expand(repl *caddy.Replacer, block string, fields map[string]*string) error {
	if repl == nil {
		repl = caddy.NewReplacer()
	}
	for name, p := range fields {
		if *p == "" {
			continue
		}
		v, err := repl.ReplaceOrErr(*p, true, true)
		if err != nil {
			return fmt.Errorf("onepush: %s: %s: %w", block, name, err)
		}
		*p = v
	}
	return nil
}

// CaddyModule returns the Caddy module information.
func (APNsPusher) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "onepush.pushers.apns",
		New: func() caddy.Module { return new(APNsPusher) },
	}
}

// Provision builds the sender, expanding placeholders.
func (c *APNsPusher) Provision(caddy.Context) error {
	p, err := c.pusher(caddy.NewReplacer())
	c.sender = p
	return err
}

// Validate requires the topic and one way to authenticate.
func (c *APNsPusher) Validate() error {
	if c.Topic == "" {
		return fmt.Errorf("onepush: apns: topic is required")
	}
	return nil
}

// Push sends m to cred's app.
func (c *APNsPusher) Push(ctx context.Context, cred *pushauth.Credential, m pushauth.PushMessage) error {
	return c.sender.Push(ctx, cred, m)
}

// Cleanup closes the idle connections to APNs of a config that is gone.
func (c *APNsPusher) Cleanup() error {
	if c.sender != nil {
		c.sender.Close()
	}
	return nil
}

// pusher builds the APNs sender, expanding placeholders with repl.
func (c *APNsPusher) pusher(repl *caddy.Replacer) (*apns.Pusher, error) {
	o := *c
	if err := expand(repl, "apns", map[string]*string{
		"key_file": &o.KeyFile, "key_id": &o.KeyID, "team_id": &o.TeamID,
		"cert_file": &o.CertFile, "cert_password": &o.CertPassword,
		"topic": &o.Topic, "host": &o.Host, "category": &o.Category, "title": &o.Title,
		"ca_file": &o.CAFile,
	}); err != nil {
		return nil, err
	}
	var roots *x509.CertPool
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("onepush: apns ca_file: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("onepush: apns ca_file %q: no PEM certificates", o.CAFile)
		}
	}
	p, err := apns.New(apns.Options{
		KeyFile: o.KeyFile, KeyID: o.KeyID, TeamID: o.TeamID,
		CertFile: o.CertFile, CertPassword: o.CertPassword,
		Topic: o.Topic, Production: o.Production, Host: o.Host,
		Category: o.Category, Title: o.Title, RootCAs: roots,
	})
	if err != nil {
		return nil, fmt.Errorf("onepush: %w", err)
	}
	return p, nil
}

// CaddyModule returns the Caddy module information.
func (FCMPusher) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "onepush.pushers.fcm",
		New: func() caddy.Module { return new(FCMPusher) },
	}
}

// Provision builds the sender, expanding placeholders.
func (c *FCMPusher) Provision(ctx caddy.Context) error {
	p, err := c.pusher(ctx, caddy.NewReplacer())
	c.sender = p
	return err
}

// Push sends m to cred's app.
func (c *FCMPusher) Push(ctx context.Context, cred *pushauth.Credential, m pushauth.PushMessage) error {
	return c.sender.Push(ctx, cred, m)
}

// pusher builds the FCM sender, expanding placeholders with repl.
func (c *FCMPusher) pusher(ctx context.Context, repl *caddy.Replacer) (pushauth.Pusher, error) {
	o := *c
	if err := expand(repl, "fcm", map[string]*string{
		"credentials_file": &o.CredentialsFile, "project_id": &o.ProjectID, "endpoint": &o.Endpoint,
	}); err != nil {
		return nil, err
	}
	p, err := fcm.New(ctx, fcm.Options{CredentialsFile: o.CredentialsFile, ProjectID: o.ProjectID, Endpoint: o.Endpoint})
	if err != nil {
		return nil, fmt.Errorf("onepush: %w", err)
	}
	return p, nil
}

// WebhookPusher sends the "webhook" push platform's pushes: a POST to the
// URL a phone registered as its push token, only under an allowed prefix.
type WebhookPusher struct {
	// Allow lists the URL prefixes push tokens may start with, each an
	// absolute http(s) URL ending in "/". Required.
	Allow []string `json:"allow,omitempty"`

	sender *webhook.Pusher
}

// CaddyModule returns the Caddy module information.
func (WebhookPusher) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "onepush.pushers.webhook",
		New: func() caddy.Module { return new(WebhookPusher) },
	}
}

// Provision builds the sender.
func (w *WebhookPusher) Provision(caddy.Context) error {
	p, err := webhook.New(w.Allow, nil)
	if err != nil {
		return fmt.Errorf("onepush: webhook_allow: %w", err)
	}
	w.sender = p
	return nil
}

// Validate requires an allowed prefix: without one every push would fail.
func (w *WebhookPusher) Validate() error {
	if len(w.Allow) == 0 {
		return fmt.Errorf("onepush: webhook: allow needs at least one URL prefix")
	}
	return nil
}

// Push posts m to cred's push token URL.
func (w *WebhookPusher) Push(ctx context.Context, cred *pushauth.Credential, m pushauth.PushMessage) error {
	return w.sender.Push(ctx, cred, m)
}

// Cleanup closes the idle connections to the relays of a config that is
// gone (a reload built a new sender).
func (w *WebhookPusher) Cleanup() error {
	if w.sender != nil {
		w.sender.Close()
	}
	return nil
}

// Allowed reports whether a push token URL is under an allowed prefix (the
// device API refuses others at registration).
func (w *WebhookPusher) Allowed(target string) bool { return w.sender.Allowed(target) }

// Interface guards
var (
	_ pushauth.Pusher    = (*APNsPusher)(nil)
	_ caddy.Provisioner  = (*APNsPusher)(nil)
	_ caddy.Validator    = (*APNsPusher)(nil)
	_ caddy.CleanerUpper = (*APNsPusher)(nil)
	_ pushauth.Pusher    = (*FCMPusher)(nil)
	_ caddy.Provisioner  = (*FCMPusher)(nil)
	_ pushauth.Pusher    = (*WebhookPusher)(nil)
	_ caddy.Provisioner  = (*WebhookPusher)(nil)
	_ caddy.Validator    = (*WebhookPusher)(nil)
	_ caddy.CleanerUpper = (*WebhookPusher)(nil)
)
