// Package webhook sends pushes as HTTP posts to the URL a credential
// registered, only under allowed prefixes (no request forwarding).
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// Pusher delivers a push as an HTTP POST to the URL the credential
// registered as its push token. Only URLs under an allowed prefix are
// used, so the gateway cannot be turned into a request forwarder.
type Pusher struct {
	allow  []string
	client *http.Client
}

// New allows URLs starting with one of prefixes; each prefix
// must be an absolute http(s) URL ending in "/".
func New(prefixes []string, client *http.Client) (*Pusher, error) {
	for _, p := range prefixes {
		u, err := url.Parse(p)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !strings.HasSuffix(p, "/") {
			return nil, fmt.Errorf("webhook allow prefix %q: must be an absolute http(s) URL ending in /", p)
		}
	}
	if client == nil {
		// The push workers all talk to a few relay hosts: keep enough idle
		// connections per host that they do not redial for every push
		// (the default keeps two).
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		client = &http.Client{
			Transport: tr,
			Timeout:   10 * time.Second,
			// A redirect could leave the allow-list.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &Pusher{allow: prefixes, client: client}, nil
}

// Close lets go of the idle connections to the relays.
func (w *Pusher) Close() { w.client.CloseIdleConnections() }

// Allowed reports whether target is under an allowed prefix.
func (w *Pusher) Allowed(target string) bool {
	u, err := url.Parse(target)
	if err != nil || u.User != nil || u.Fragment != "" {
		return false
	}
	for _, p := range w.allow {
		if strings.HasPrefix(target, p) {
			return true
		}
	}
	return false
}

// Push posts {"challenge_id","kind"} to the credential's URL.
func (w *Pusher) Push(ctx context.Context, cred *pushauth.Credential, m pushauth.PushMessage) error {
	if !w.Allowed(cred.PushToken) {
		return fmt.Errorf("%w: webhook URL is not on the allow-list", pushauth.ErrDeadToken)
	}
	body, _ := json.Marshal(map[string]string{"challenge_id": m.ChallengeID, "kind": m.Kind})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cred.PushToken, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook push: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook push: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusGone || resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: webhook answered %d", pushauth.ErrDeadToken, resp.StatusCode)
	case resp.StatusCode >= 300:
		return fmt.Errorf("webhook push: status %d", resp.StatusCode)
	}
	return nil
}
