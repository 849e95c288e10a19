package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/ocra"
)

// Device serves the device protocol under Base (default
// "/onepush/device/v1"). It is an http.Handler; requests outside Base get
// 404.
type Device struct {
	Engine *pushauth.Engine
	Base   string
	// Grace is how long the users of an uninstalled credential may still
	// log in with their password only.
	Grace time.Duration
	// ClientIP returns the client address as the trusted-proxy logic sees
	// it (registrations are limited by it); nil uses the connection's
	// remote address.
	ClientIP func(*http.Request) string

	mux *routeMux
}

// DefaultDeviceBase is where the device protocol lives unless configured.
const DefaultDeviceBase = "/onepush/device/v1"

const maxDeviceBody = 16 << 10

// NewDevice builds the handler.
func NewDevice(e *pushauth.Engine, base string, grace time.Duration) *Device {
	if base == "" {
		base = DefaultDeviceBase
	}
	base = strings.TrimSuffix(base, "/")
	d := &Device{Engine: e, Base: base, Grace: grace, mux: newRouteMux()}
	d.mux.HandleFunc("POST "+base+"/credentials", d.register)
	d.mux.HandleFunc("PUT "+base+"/credentials/{id}/push-token", d.authed(d.pushToken))
	d.mux.HandleFunc("DELETE "+base+"/credentials/{id}", d.authed(d.uninstall))
	d.mux.HandleFunc("GET "+base+"/challenges", d.authed(d.pending))
	d.mux.HandleFunc("GET "+base+"/challenges/{id}", d.authed(d.challenge))
	d.mux.HandleFunc("POST "+base+"/challenges/{id}/decision", d.decision)
	// A batch's rows, paged (rows.go).
	d.mux.HandleFunc("GET "+base+"/challenges/{id}/rows", d.authed(d.rows))
	return d
}

// Routes returns the patterns the device API serves ("POST
// /onepush/device/v1/credentials"), in the order they were registered, so
// that its description (docs/openapi.yaml) can be checked against what is
// actually served.
func (d *Device) Routes() []string { return d.mux.Patterns() }

// Handles reports whether path is under the API's base.
func (d *Device) Handles(path string) bool {
	return path == d.Base || strings.HasPrefix(path, d.Base+"/")
}

func (d *Device) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxDeviceBody)
	w.Header().Set("Cache-Control", "no-store")
	d.mux.ServeHTTP(w, r)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func (d *Device) register(w http.ResponseWriter, r *http.Request) {
	if !d.Engine.AllowRegistration(d.clientIP(r)) {
		writeErr(w, http.StatusTooManyRequests, "too many registrations; try again later")
		return
	}
	var req struct {
		PublicKey string `json:"public_key"`
		Platform  string `json:"platform"`
		PushToken string `json:"push_token"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	der, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(req.PublicKey, "="))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "public_key: not base64url")
		return
	}
	c, err := d.Engine.RegisterCredential(r.Context(), der, req.Platform, req.PushToken)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"credential_id": c.ID,
		"otp_secret":    c.OTPSecret,
		"otp":           map[string]any{"digits": 6, "period": 30, "algorithm": "SHA1"},
		"ocra_key":      c.OCRAKey,
		"ocra":          map[string]any{"suite": ocra.TransactionSuite, "question": ocra.QuestionLayout, "challenge_digits": ocra.ChallengeDigits},
	})
}

// authed verifies the bearer device token and, where the path names a
// credential, that it is the token's own.
func (d *Device) authed(next func(http.ResponseWriter, *http.Request, *pushauth.Credential)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="onepush"`)
			writeErr(w, http.StatusUnauthorized, "device token required")
			return
		}
		_, cred, err := d.Engine.VerifyDeviceToken(r.Context(), strings.TrimSpace(raw))
		if err != nil && !errors.Is(err, pushauth.ErrBadToken) {
			// The store failed, not the token: 503, so the app retries
			// instead of taking its credential for revoked.
			d.Engine.Logger().Error("device token not checked: store unavailable", "path", r.URL.Path, "error", err)
			d.Engine.StoreFailed("verify_token", err)
			writeErr(w, http.StatusServiceUnavailable, "store unavailable")
			return
		}
		if err != nil {
			d.Engine.Logger().Info("device token refused", "path", r.URL.Path, "reason", err.Error())
			writeErr(w, http.StatusUnauthorized, "invalid device token")
			return
		}
		if id := r.PathValue("id"); id != "" && strings.Contains(r.Pattern, "/credentials/") && id != cred.ID {
			writeErr(w, http.StatusForbidden, "token is not for this credential")
			return
		}
		next(w, r, cred)
	}
}

func (d *Device) pushToken(w http.ResponseWriter, r *http.Request, cred *pushauth.Credential) {
	var req struct {
		Platform  string `json:"platform"`
		PushToken string `json:"push_token"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	if err := d.Engine.UpdatePushToken(r.Context(), cred, req.Platform, req.PushToken); err != nil {
		writeErr(w, http.StatusBadRequest, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *Device) uninstall(w http.ResponseWriter, r *http.Request, cred *pushauth.Credential) {
	if err := d.Engine.Uninstall(r.Context(), cred, d.Engine.Now().Add(d.Grace)); err != nil {
		writeErr(w, http.StatusServiceUnavailable, "store unavailable")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type challengeView struct {
	ID        string          `json:"id"`
	Kind      string          `json:"kind"`
	ExpiresAt time.Time       `json:"expires_at"`
	Context   string          `json:"context"`
	Status    pushauth.Status `json:"status"`
	// Reason says why a challenge was stopped without a decision
	// (pushauth.ReasonAnotherLogin), absent otherwise.
	Reason string `json:"reason,omitempty"`
}

func viewOf(c *pushauth.Challenge) challengeView {
	return challengeView{ID: c.ID, Kind: c.Kind, ExpiresAt: c.ExpiresAt, Context: c.Context, Status: c.Status, Reason: c.StopReason()}
}

func (d *Device) pending(w http.ResponseWriter, r *http.Request, cred *pushauth.Credential) {
	cs, err := d.Engine.PendingFor(r.Context(), cred)
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, "store unavailable")
		return
	}
	out := make([]challengeView, 0, len(cs))
	for _, c := range cs {
		out = append(out, viewOf(c))
	}
	writeJSON(w, http.StatusOK, map[string]any{"challenges": out})
}

func (d *Device) challenge(w http.ResponseWriter, r *http.Request, cred *pushauth.Credential) {
	c, err := d.Engine.ChallengeFor(r.Context(), cred, r.PathValue("id"))
	if errors.Is(err, pushauth.ErrChallengeNotFound) {
		writeErr(w, http.StatusNotFound, "unknown challenge")
		return
	}
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, "store unavailable")
		return
	}
	writeJSON(w, http.StatusOK, viewOf(c))
}

func (d *Device) decision(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token string `json:"token"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeErr(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	c, err := d.Engine.Decide(r.Context(), r.PathValue("id"), req.Token)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]any{"id": c.ID, "status": c.Status})
	case errors.Is(err, pushauth.ErrBadToken):
		d.Engine.Logger().Info("decision refused", "challenge", r.PathValue("id"), "reason", err.Error())
		writeErr(w, http.StatusUnauthorized, "invalid decision token")
	case errors.Is(err, pushauth.ErrChallengeNotFound):
		writeErr(w, http.StatusNotFound, "unknown challenge")
	case errors.Is(err, pushauth.ErrConflict):
		writeErr(w, http.StatusConflict, err.Error())
	default:
		d.Engine.Logger().Error("decision failed", "challenge", r.PathValue("id"), "error", err)
		writeErr(w, http.StatusServiceUnavailable, "store unavailable")
	}
}

func (d *Device) clientIP(r *http.Request) string { return clientAddr(d.ClientIP, r) }

// clientAddr is r's client address: clientIP's when set (Caddy's view,
// which honours trusted_proxies), else the connection's.
func clientAddr(clientIP func(*http.Request) string, r *http.Request) string {
	if clientIP != nil {
		return clientIP(r)
	}
	return pushauth.ClientAddr(r.RemoteAddr)
}
