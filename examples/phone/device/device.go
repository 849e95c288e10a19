// Package device is a client for the onepush device protocol: it plays the
// part of the bank's phone app. It holds a P-256 key, registers it with the
// server, signs device and decision JWTs (ES256), lists and fetches pending
// challenges and posts decisions.
//
// It speaks only the wire protocol (JSON over HTTP(S) under a base URL such
// as http://127.0.0.1:8080/onepush/device/v1) and imports no onepush
// package but pushauth/ocra, the response algorithm the protocol defines
// (a phone and the gateway must compute it alike), so tests of the whole
// product can use it as the phone.
package device

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/onepush/onepush/pushauth/ocra"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// Audience is the aud claim of every JWT the phone signs.
const Audience = "onepush"

// TokenLifetime is exp - iat of every JWT the phone signs.
const TokenLifetime = 60 * time.Second

// Decisions accepted by the server.
const (
	Approve = "approve"
	Deny    = "deny"
	Fraud   = "fraud"
)

// maxBody bounds how much of a response the client reads.
const maxBody = 1 << 20

// OTPParams describes how the security code is computed (from the
// registration answer).
type OTPParams struct {
	Digits    int    `json:"digits"`
	Period    int    `json:"period"`
	Algorithm string `json:"algorithm"`
}

// OCRAParams describes how the phone answers a transaction's challenge
// number offline (from the registration answer): the suite, the layout of
// its question and the length of the challenge number.
type OCRAParams struct {
	Suite           string `json:"suite"`
	Question        string `json:"question"`
	ChallengeDigits int    `json:"challenge_digits"`
}

// DisplayField is one label/value line the server wants the phone to show.
type DisplayField struct {
	Label string `json:"label"`
	Value string `json:"value"`
	// Labels is the label per language (ja, en) when the bank's policy
	// gives one; show the phone's language's, else Label (LabelIn).
	Labels map[string]string `json:"labels,omitempty"`
}

// LabelIn is f's label in lang ("ja", "en").
func (f DisplayField) LabelIn(lang string) string {
	if s, ok := f.Labels[lang]; ok {
		return s
	}
	return f.Label
}

// Transaction is what a transaction moves, typed and raw: read amount,
// currency and payee from here, never from display labels. Amount is ASCII
// digits in the currency's unit (yen for JPY); format it only to show it.
type Transaction struct {
	Amount    string `json:"amount"`
	Currency  string `json:"currency"`
	Payee     string `json:"payee"`
	PayeeName string `json:"payee_name,omitempty"`
	// AmountShown is the amount as the bank formats it per language
	// (1,500,000円, ¥1,500,000): show it, but compute nothing from it.
	AmountShown map[string]string `json:"amount_shown,omitempty"`
}

// ContextInfo is the decoded challenge context. Unknown keys are ignored,
// and members a server of an older version does not send stay empty.
type ContextInfo struct {
	User        string         `json:"user"`
	Kind        string         `json:"kind"`
	Rule        string         `json:"rule"`
	Display     []DisplayField `json:"display"`
	ClientIP    string         `json:"client_ip"`
	UserAgent   string         `json:"user_agent"`
	NumberMatch bool           `json:"number_match"`
	// CodeDigits is the length of the code the browser's waiting page
	// shows, which an approval must carry (code transfer); 0 when the
	// rule is approve-only.
	CodeDigits int    `json:"code_digits"`
	CreatedAt  string `json:"created_at"`
	// Service names the bank service (国内振込, 外為) and Host the site the
	// request was sent to.
	Service string `json:"service"`
	Host    string `json:"host"`
	// Transaction is set for transactions whose rule declares typed fields.
	Transaction *Transaction `json:"transaction"`
	// Batch is set for a bulk, payroll or approved batch: approve it only
	// after Rows has fetched and checked every row (batch.go).
	Batch *Batch `json:"batch"`
}

// Challenge is a pending prompt as the server describes it.
type Challenge struct {
	ID        string
	Kind      string
	ExpiresAt time.Time
	// Context is the raw context string exactly as received; the decision
	// JWT's ctx claim is the SHA-256 of these bytes.
	Context string
	// Parsed is Context decoded. It is the zero value when Context is not
	// a JSON object (ParseErr then says why).
	Parsed   ContextInfo
	ParseErr error
	// Rows are the batch's rows once Rows has checked them against the
	// context; an approval of a batch challenge needs them.
	Rows []Row
	// Status is where the challenge is (pending, approved, denied,
	// expired, cancelled, superseded), as the server last said.
	Status string
	// Reason says why a challenge was stopped without a decision, e.g.
	// ReasonAnotherLogin; "" otherwise. StopMessage words it for the user.
	Reason string
}

// ReasonAnotherLogin is the reason of a challenge stopped because another
// sign-in of the same user started while it was pending (at least one of
// them approve-only): both were stopped.
const ReasonAnotherLogin = "another_login_started"

// StoppedKind is the kind of a push naming a challenge the server
// stopped: the app fetches it and tells the user its reason.
const StoppedKind = "stopped"

// StopMessage is what the app tells its user about a challenge stopped
// for reason, "" for a reason it does not know.
func StopMessage(reason string) string {
	switch reason {
	case ReasonAnotherLogin:
		return "Another sign-in to your account started at the same time; both were stopped. If this wasn't you, report fraud."
	}
	return ""
}

// wireChallenge is the JSON form of a challenge.
type wireChallenge struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	ExpiresAt string `json:"expires_at"`
	Context   string `json:"context"`
	Status    string `json:"status"`
	Reason    string `json:"reason"`
}

func (w wireChallenge) challenge() (*Challenge, error) {
	if w.ID == "" {
		return nil, errors.New("challenge without id")
	}
	ch := &Challenge{ID: w.ID, Kind: w.Kind, Context: w.Context, Status: w.Status, Reason: w.Reason}
	if w.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339Nano, w.ExpiresAt)
		if err != nil {
			return nil, fmt.Errorf("challenge %s: bad expires_at %q: %w", w.ID, w.ExpiresAt, err)
		}
		ch.ExpiresAt = t
	}
	if err := json.Unmarshal([]byte(w.Context), &ch.Parsed); err != nil {
		ch.Parsed = ContextInfo{}
		ch.ParseErr = fmt.Errorf("challenge %s: context is not a JSON object: %w", w.ID, err)
	}
	return ch, nil
}

// StatusError is returned when the server answers with an unexpected HTTP
// status. Use errors.As to inspect it.
type StatusError struct {
	Op     string // e.g. "GET /challenges"
	Status int
	Body   string // excerpt of the response body
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("onepush device: %s: HTTP %d: %s", e.Op, e.Status, e.Body)
}

// Option configures a Phone.
type Option func(*Phone)

// WithHTTPClient sets the HTTP client used for every call (default: a
// client with a 30 s timeout).
func WithHTTPClient(c *http.Client) Option {
	return func(p *Phone) {
		if c != nil {
			p.client = c
		}
	}
}

// WithClock sets the clock used for iat/exp of signed JWTs and for the
// security code (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(p *Phone) {
		if now != nil {
			p.now = now
		}
	}
}

// WithHomeCurrency sets the ISO 4217 code of an amount typed without one
// into Respond (default JPY, the demo bank's).
func WithHomeCurrency(code string) Option {
	return func(p *Phone) {
		if code != "" {
			p.currency = code
		}
	}
}

// WithKey uses the given P-256 key instead of generating a fresh one.
func WithKey(k *ecdsa.PrivateKey) Option {
	return func(p *Phone) {
		if k != nil {
			p.key = k
		}
	}
}

// Phone is a simulated phone app: one device key and, after Register, one
// credential. It is safe for concurrent use.
type Phone struct {
	base   string
	client *http.Client
	now    func() time.Time
	key    *ecdsa.PrivateKey
	// currency is what Respond takes an amount typed without a code in.
	currency string

	mu        sync.RWMutex
	credID    string
	otpSecret string
	otp       OTPParams
	ocraKey   string // hex, as registered; "" from a server without it
	ocra      OCRAParams
	platform  string
	pushToken string
}

// New returns a phone for the device API at base (for example
// "http://127.0.0.1:8080/onepush/device/v1"). It generates a fresh P-256
// key unless WithKey is given.
func New(base string, opts ...Option) (*Phone, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("onepush device: bad base URL %q", base)
	}
	p := &Phone{
		base:     strings.TrimRight(base, "/"),
		client:   &http.Client{Timeout: 30 * time.Second},
		now:      time.Now,
		currency: "JPY",
	}
	for _, o := range opts {
		o(p)
	}
	if p.key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("onepush device: generate key: %w", err)
		}
		p.key = k
	}
	if p.key.Curve != elliptic.P256() {
		return nil, errors.New("onepush device: key is not P-256")
	}
	return p, nil
}

// Base returns the device API base URL (without trailing slash).
func (p *Phone) Base() string { return p.base }

// Key returns the device private key.
func (p *Phone) Key() *ecdsa.PrivateKey { return p.key }

// PublicKeyB64 returns the public key as sent at registration:
// base64url (no padding) of its PKIX/SPKI DER encoding.
func (p *Phone) PublicKeyB64() (string, error) {
	der, err := x509.MarshalPKIXPublicKey(&p.key.PublicKey)
	if err != nil {
		return "", fmt.Errorf("onepush device: marshal public key: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(der), nil
}

// CredentialID returns the credential id from Register ("" before).
func (p *Phone) CredentialID() string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.credID
}

// OTPSecret returns the base32 security-code secret from Register.
func (p *Phone) OTPSecret() string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.otpSecret
}

// OCRAKey returns the hex OCRA key from Register ("" when the server sent
// none).
func (p *Phone) OCRAKey() string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.ocraKey
}

// OCRA returns the transaction-response parameters from Register.
func (p *Phone) OCRA() OCRAParams {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.ocra
}

// Respond is the offline answer to a transaction's waiting page: the user
// types the challenge number, the payee account and the amount as the page
// shows them (1,500,000 or 1,500,000 USD; without a code the amount is in
// the home currency), and types the 8 digits it returns into the browser.
// It needs no network. The response is bound to all three (RFC 6287 OCRA,
// see pushauth/ocra): for another amount or payee it is another number.
func (p *Phone) Respond(challengeNumber, payee, amount string) (string, error) {
	p.mu.RLock()
	hexKey, params := p.ocraKey, p.ocra
	p.mu.RUnlock()
	if hexKey == "" {
		return "", errors.New("onepush device: no OCRA key (registered with a server without transaction responses): register again")
	}
	if params.Suite != ocra.TransactionSuite || params.Question != ocra.QuestionLayout {
		return "", fmt.Errorf("onepush device: unsupported transaction response %q with question %q (this app knows %q with %q)",
			params.Suite, params.Question, ocra.TransactionSuite, ocra.QuestionLayout)
	}
	key, err := ocra.ParseKey(hexKey)
	if err != nil {
		return "", fmt.Errorf("onepush device: %w", err)
	}
	tx, err := ocra.Typed(challengeNumber, payee, amount, p.currency)
	if err != nil {
		return "", fmt.Errorf("onepush device: %w", err)
	}
	r, err := ocra.TransactionResponse(key, tx)
	if err != nil {
		return "", fmt.Errorf("onepush device: %w", err)
	}
	return r, nil
}

// OTP returns the security-code parameters from Register.
func (p *Phone) OTP() OTPParams {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.otp
}

// PushTarget returns the platform and push token last sent to the server.
func (p *Phone) PushTarget() (platform, token string) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.platform, p.pushToken
}

// SecurityCode returns the current security code (TOTP, RFC 6238) the user
// types into the enrollment page.
func (p *Phone) SecurityCode() (string, error) {
	code, _, err := p.SecurityCodeAt(p.now())
	return code, err
}

// SecurityCodeAt returns the security code at t and how long it stays
// valid from t.
func (p *Phone) SecurityCodeAt(t time.Time) (code string, validFor time.Duration, err error) {
	p.mu.RLock()
	secret, params := p.otpSecret, p.otp
	p.mu.RUnlock()
	if secret == "" {
		return "", 0, errors.New("onepush device: not registered (no otp secret)")
	}
	opts := totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}
	if params.Period > 0 {
		opts.Period = uint(params.Period)
	}
	switch params.Digits {
	case 0, 6:
	case 8:
		opts.Digits = otp.DigitsEight
	default:
		return "", 0, fmt.Errorf("onepush device: unsupported otp digits %d", params.Digits)
	}
	switch strings.ToUpper(params.Algorithm) {
	case "", "SHA1":
	case "SHA256":
		opts.Algorithm = otp.AlgorithmSHA256
	case "SHA512":
		opts.Algorithm = otp.AlgorithmSHA512
	default:
		return "", 0, fmt.Errorf("onepush device: unsupported otp algorithm %q", params.Algorithm)
	}
	code, err = totp.GenerateCodeCustom(secret, t, opts)
	if err != nil {
		return "", 0, fmt.Errorf("onepush device: security code: %w", err)
	}
	period := int64(opts.Period)
	validFor = time.Duration(period-t.Unix()%period) * time.Second
	return code, validFor, nil
}

// Register creates a credential for the phone's key. platform is "webhook"
// for the simulator (push_token is then the URL the server POSTs pushes to)
// or "none" for poll-only. On success CredentialID and OTPSecret are set.
func (p *Phone) Register(ctx context.Context, platform, pushToken string) error {
	pub, err := p.PublicKeyB64()
	if err != nil {
		return err
	}
	req := map[string]string{"public_key": pub, "platform": platform, "push_token": pushToken}
	const op = "POST /credentials"
	status, body, err := p.do(ctx, http.MethodPost, "/credentials", req, false)
	if err != nil {
		return fmt.Errorf("onepush device: %s: %w", op, err)
	}
	if status != http.StatusCreated {
		return statusErr(op, status, body)
	}
	var resp struct {
		CredentialID string     `json:"credential_id"`
		OTPSecret    string     `json:"otp_secret"`
		OTP          OTPParams  `json:"otp"`
		OCRAKey      string     `json:"ocra_key"`
		OCRA         OCRAParams `json:"ocra"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("onepush device: %s: bad response %s: %w", op, excerpt(body), err)
	}
	if resp.CredentialID == "" || resp.OTPSecret == "" {
		return fmt.Errorf("onepush device: %s: response lacks credential_id or otp_secret: %s", op, excerpt(body))
	}
	p.mu.Lock()
	p.credID, p.otpSecret, p.otp = resp.CredentialID, resp.OTPSecret, resp.OTP
	p.ocraKey, p.ocra = resp.OCRAKey, resp.OCRA
	p.platform, p.pushToken = platform, pushToken
	p.mu.Unlock()
	return nil
}

// DeviceToken returns a fresh device JWT (ES256; iss = credential id,
// aud = "onepush", iat = now, exp = now+60s, random 128-bit jti).
func (p *Phone) DeviceToken() (string, error) {
	claims, err := p.baseClaims()
	if err != nil {
		return "", err
	}
	return p.sign(claims)
}

// baseClaims are what every token of this phone carries: iss, aud, iat,
// exp and a fresh jti.
func (p *Phone) baseClaims() (jwt.MapClaims, error) {
	iss := p.CredentialID()
	if iss == "" {
		return nil, errors.New("onepush device: not registered (no credential id)")
	}
	jti, err := newJTI()
	if err != nil {
		return nil, err
	}
	now := p.now()
	return jwt.MapClaims{"iss": iss, "aud": Audience, "iat": now.Unix(), "exp": now.Add(TokenLifetime).Unix(), "jti": jti}, nil
}

// ContextHash returns the ctx claim for a context string:
// base64url (no padding) of SHA-256 over its bytes.
func ContextHash(context string) string {
	sum := sha256.Sum256([]byte(context))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// DecisionToken builds the signed decision JWT for ch. The number claim is
// included when the challenge asks for number matching
// (ch.Parsed.NumberMatch) or when number is non-zero.
func (p *Phone) DecisionToken(ch *Challenge, decision string, number int) (string, error) {
	claims, err := p.decisionClaims(ch, decision)
	if err != nil {
		return "", err
	}
	if ch.Parsed.NumberMatch || number != 0 {
		claims["number"] = number
	}
	return p.sign(claims)
}

// DecisionTokenWithCode builds the signed decision JWT for ch carrying
// code, the digits the user typed from the browser's waiting page, in the
// code claim (a JSON string: leading zeros count). The claim goes with
// approvals only; an approval of a challenge that transfers a code
// (ch.Parsed.CodeDigits > 0) needs one of that length, so that a user who
// skipped the code gets told here rather than by a refusal.
func (p *Phone) DecisionTokenWithCode(ch *Challenge, decision, code string) (string, error) {
	claims, err := p.decisionClaims(ch, decision)
	if err != nil {
		return "", err
	}
	code = strings.TrimSpace(code)
	if decision == Approve {
		if n := ch.Parsed.CodeDigits; n > 0 && len(code) != n {
			return "", fmt.Errorf("onepush device: challenge %s: type the %d-digit code the browser shows (got %d characters)", ch.ID, n, len(code))
		}
		for i := 0; i < len(code); i++ {
			if code[i] < '0' || code[i] > '9' {
				return "", fmt.Errorf("onepush device: challenge %s: the code is digits only", ch.ID)
			}
		}
		if code != "" {
			claims["code"] = code
		}
	}
	return p.sign(claims)
}

// DecideWithCode signs and posts a decision carrying the code typed from
// the browser (see DecisionTokenWithCode); statuses as Decide.
func (p *Phone) DecideWithCode(ctx context.Context, ch *Challenge, decision, code string) (int, error) {
	tok, err := p.DecisionTokenWithCode(ch, decision, code)
	if err != nil {
		return 0, err
	}
	status, _, err := p.PostDecisionToken(ctx, ch.ID, tok)
	return status, err
}

// decisionClaims are the claims every decision token carries.
func (p *Phone) decisionClaims(ch *Challenge, decision string) (jwt.MapClaims, error) {
	if ch == nil || ch.ID == "" {
		return nil, errors.New("onepush device: decision for empty challenge")
	}
	claims, err := p.baseClaims()
	if err != nil {
		return nil, err
	}
	if b := ch.Parsed.Batch; decision == Approve && b != nil {
		// The user approves the rows she saw: never a batch whose rows
		// were not fetched and checked against the context.
		if err := CheckRows(b, ch.Rows); err != nil {
			return nil, fmt.Errorf("onepush device: challenge %s: fetch and check the rows first (Rows): %w", ch.ID, err)
		}
	}
	claims["sub"], claims["decision"], claims["ctx"] = ch.ID, decision, ContextHash(ch.Context)
	return claims, nil
}

// Decide signs and posts a decision for ch and returns the HTTP status
// (200 ok, 401 rejected token, 404 unknown, 409 already decided, expired or
// cancelled). err is set only when no status was obtained.
func (p *Phone) Decide(ctx context.Context, ch *Challenge, decision string, number int) (int, error) {
	tok, err := p.DecisionToken(ch, decision, number)
	if err != nil {
		return 0, err
	}
	status, _, err := p.PostDecisionToken(ctx, ch.ID, tok)
	return status, err
}

// PostDecisionToken posts token (any string, for tests that craft bad
// tokens) as the decision for challengeID, with a valid device JWT in the
// Authorization header. It returns the status and body; err is set only when
// no status was obtained.
func (p *Phone) PostDecisionToken(ctx context.Context, challengeID, token string) (int, []byte, error) {
	op := "POST /challenges/{id}/decision"
	status, body, err := p.do(ctx, http.MethodPost, "/challenges/"+url.PathEscape(challengeID)+"/decision",
		map[string]string{"token": token}, true)
	if err != nil {
		return 0, nil, fmt.Errorf("onepush device: %s: %w", op, err)
	}
	return status, body, nil
}

// Pending lists the challenges waiting for this phone (GET /challenges).
func (p *Phone) Pending(ctx context.Context) ([]Challenge, error) {
	const op = "GET /challenges"
	status, body, err := p.do(ctx, http.MethodGet, "/challenges", nil, true)
	if err != nil {
		return nil, fmt.Errorf("onepush device: %s: %w", op, err)
	}
	if status != http.StatusOK {
		return nil, statusErr(op, status, body)
	}
	var resp struct {
		Challenges []wireChallenge `json:"challenges"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("onepush device: %s: bad response %s: %w", op, excerpt(body), err)
	}
	out := make([]Challenge, 0, len(resp.Challenges))
	for _, w := range resp.Challenges {
		ch, err := w.challenge()
		if err != nil {
			return nil, fmt.Errorf("onepush device: %s: %w", op, err)
		}
		out = append(out, *ch)
	}
	return out, nil
}

// Get fetches one challenge (GET /challenges/{id}).
func (p *Phone) Get(ctx context.Context, id string) (*Challenge, error) {
	op := "GET /challenges/" + id
	status, body, err := p.do(ctx, http.MethodGet, "/challenges/"+url.PathEscape(id), nil, true)
	if err != nil {
		return nil, fmt.Errorf("onepush device: %s: %w", op, err)
	}
	if status != http.StatusOK {
		return nil, statusErr(op, status, body)
	}
	var w wireChallenge
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("onepush device: %s: bad response %s: %w", op, excerpt(body), err)
	}
	ch, err := w.challenge()
	if err != nil {
		return nil, fmt.Errorf("onepush device: %s: %w", op, err)
	}
	return ch, nil
}

// UpdatePushToken changes where the server sends pushes (expects 204).
func (p *Phone) UpdatePushToken(ctx context.Context, platform, token string) error {
	id := p.CredentialID()
	if id == "" {
		return errors.New("onepush device: not registered (no credential id)")
	}
	const op = "PUT /credentials/{id}/push-token"
	status, body, err := p.do(ctx, http.MethodPut, "/credentials/"+url.PathEscape(id)+"/push-token",
		map[string]string{"platform": platform, "push_token": token}, true)
	if err != nil {
		return fmt.Errorf("onepush device: %s: %w", op, err)
	}
	if status != http.StatusNoContent {
		return statusErr(op, status, body)
	}
	p.mu.Lock()
	p.platform, p.pushToken = platform, token
	p.mu.Unlock()
	return nil
}

// Uninstall deletes the credential on the server (expects 204). The phone
// keeps its key and credential id, so a test can check that later calls
// are refused.
func (p *Phone) Uninstall(ctx context.Context) error {
	id := p.CredentialID()
	if id == "" {
		return errors.New("onepush device: not registered (no credential id)")
	}
	const op = "DELETE /credentials/{id}"
	status, body, err := p.do(ctx, http.MethodDelete, "/credentials/"+url.PathEscape(id), nil, true)
	if err != nil {
		return fmt.Errorf("onepush device: %s: %w", op, err)
	}
	if status != http.StatusNoContent {
		return statusErr(op, status, body)
	}
	return nil
}

// WaitPending polls GET /challenges every poll (default 250ms) until at
// least one challenge is pending and returns the first one. Transport
// errors are retried; an HTTP error status is returned at once. When ctx
// ends it returns ctx's error (with the last transport error, if any).
func (p *Phone) WaitPending(ctx context.Context, poll time.Duration) (*Challenge, error) {
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	var last error
	for {
		list, err := p.Pending(ctx)
		if err == nil && len(list) > 0 {
			return &list[0], nil
		}
		if err != nil {
			var se *StatusError
			if errors.As(err, &se) {
				return nil, err
			}
			last = err
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			if last != nil {
				return nil, fmt.Errorf("onepush device: no pending challenge: %w (last error: %v)", ctx.Err(), last)
			}
			return nil, fmt.Errorf("onepush device: no pending challenge: %w", ctx.Err())
		case <-t.C:
		}
	}
}

func (p *Phone) sign(claims jwt.MapClaims) (string, error) {
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["typ"] = "JWT"
	s, err := tok.SignedString(p.key)
	if err != nil {
		return "", fmt.Errorf("onepush device: sign JWT: %w", err)
	}
	return s, nil
}

// do sends one request. body (if non-nil) is sent as JSON; auth adds a
// fresh device JWT. It returns the status and at most maxBody bytes.
func (p *Phone) do(ctx context.Context, method, path string, body any, auth bool) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if auth {
		tok, err := p.DeviceToken()
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, fmt.Errorf("read response (HTTP %d): %w", resp.StatusCode, err)
	}
	return resp.StatusCode, b, nil
}

func statusErr(op string, status int, body []byte) error {
	return &StatusError{Op: op, Status: status, Body: excerpt(body)}
}

// excerpt shortens a response body for error messages.
func excerpt(b []byte) string {
	s := strings.TrimSpace(string(b))
	const max = 200
	if len(s) > max {
		s = s[:max] + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

func newJTI() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("onepush device: jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// State is what a phone persists between runs.
type State struct {
	Base         string     `json:"base,omitempty"`
	CredentialID string     `json:"credential_id"`
	OTPSecret    string     `json:"otp_secret"`
	OTP          OTPParams  `json:"otp"`
	OCRAKey      string     `json:"ocra_key,omitempty"`
	OCRA         OCRAParams `json:"ocra,omitzero"`
	Platform     string     `json:"platform,omitempty"`
	PushToken    string     `json:"push_token,omitempty"`
	PrivateKey   string     `json:"private_key"` // PEM, PKCS#8 "PRIVATE KEY"
}

// MarshalState returns the phone's key and credential as JSON (the key is
// a PEM block inside). Keep the file private: it is the device key.
func (p *Phone) MarshalState() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(p.key)
	if err != nil {
		return nil, fmt.Errorf("onepush device: marshal key: %w", err)
	}
	p.mu.RLock()
	st := State{
		Base: p.base, CredentialID: p.credID, OTPSecret: p.otpSecret, OTP: p.otp,
		OCRAKey: p.ocraKey, OCRA: p.ocra,
		Platform: p.platform, PushToken: p.pushToken,
		PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
	}
	p.mu.RUnlock()
	return json.MarshalIndent(st, "", "  ")
}

// Restore rebuilds a phone from MarshalState output. base, when non-empty,
// overrides the base URL stored in the state.
func Restore(base string, data []byte, opts ...Option) (*Phone, error) {
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("onepush device: bad state: %w", err)
	}
	blk, _ := pem.Decode([]byte(st.PrivateKey))
	if blk == nil {
		return nil, errors.New("onepush device: state has no PEM private key")
	}
	var key *ecdsa.PrivateKey
	switch blk.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("onepush device: state key: %w", err)
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, errors.New("onepush device: state key is not ECDSA")
		}
		key = ek
	case "EC PRIVATE KEY":
		k, err := x509.ParseECPrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("onepush device: state key: %w", err)
		}
		key = k
	default:
		return nil, fmt.Errorf("onepush device: state key has PEM type %q", blk.Type)
	}
	if base == "" {
		base = st.Base
	}
	p, err := New(base, append(opts, WithKey(key))...)
	if err != nil {
		return nil, err
	}
	p.credID, p.otpSecret, p.otp = st.CredentialID, st.OTPSecret, st.OTP
	p.ocraKey, p.ocra = st.OCRAKey, st.OCRA
	p.platform, p.pushToken = st.Platform, st.PushToken
	return p, nil
}
