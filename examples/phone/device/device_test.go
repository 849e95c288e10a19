package device

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pquerna/otp/totp"
)

// ---------------------------------------------------------------------------
// A fake onepush device API, written from the protocol description only. It
// verifies every JWT (ES256 signature with the registered key, header, all
// claims, single-use jti) and the ctx hash of decisions.

type fakeCred struct {
	pub       *ecdsa.PublicKey
	platform  string
	pushToken string
	secret    string
	ocraKey   string // hex
	deleted   bool
}

type fakeChal struct {
	id, kind, cred string
	context        string
	expires        time.Time
	numberMatch    bool
	number         int
	code           string // the browser's code an approval must carry; "" approve-only
	state          string // "pending", "approve", "deny", "fraud"
}

type decisionRecord struct {
	ChallengeID string
	Decision    string
	Number      *int
	Code        *string
}

type fakeServer struct {
	t         *testing.T
	srv       *httptest.Server
	base      string
	mu        sync.Mutex
	creds     map[string]*fakeCred
	chals     map[string]*fakeChal
	jtis      map[string]bool
	seq       int
	decisions chan decisionRecord
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	f := &fakeServer{
		t:         t,
		creds:     map[string]*fakeCred{},
		chals:     map[string]*fakeChal{},
		jtis:      map[string]bool{},
		decisions: make(chan decisionRecord, 16),
	}
	const pre = "/onepush/device/v1"
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+pre+"/credentials", f.register)
	mux.HandleFunc("PUT "+pre+"/credentials/{id}/push-token", f.pushToken)
	mux.HandleFunc("DELETE "+pre+"/credentials/{id}", f.deleteCred)
	mux.HandleFunc("GET "+pre+"/challenges", f.list)
	mux.HandleFunc("GET "+pre+"/challenges/{id}", f.get)
	mux.HandleFunc("POST "+pre+"/challenges/{id}/decision", f.decision)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	f.base = f.srv.URL + pre
	return f
}

func jsonErr(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeServer) register(w http.ResponseWriter, r *http.Request) {
	var req struct {
		PublicKey string `json:"public_key"`
		Platform  string `json:"platform"`
		PushToken string `json:"push_token"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		jsonErr(w, 400, "bad json")
		return
	}
	if strings.ContainsAny(req.PublicKey, "+/=") {
		jsonErr(w, 400, "public_key must be base64url without padding")
		return
	}
	der, err := base64.RawURLEncoding.DecodeString(req.PublicKey)
	if err != nil {
		jsonErr(w, 400, "public_key not base64url")
		return
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		jsonErr(w, 400, "public_key not SPKI")
		return
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve.Params().Name != "P-256" {
		jsonErr(w, 400, "public_key not P-256")
		return
	}
	switch req.Platform {
	case "webhook", "none":
	default:
		jsonErr(w, 400, "bad platform")
		return
	}
	var sb [20]byte
	_, _ = rand.Read(sb[:])
	f.mu.Lock()
	f.seq++
	id := fmt.Sprintf("cred-%d", f.seq)
	secret := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sb[:])
	var kb [32]byte
	_, _ = rand.Read(kb[:])
	ocraKey := hex.EncodeToString(kb[:])
	f.creds[id] = &fakeCred{pub: pub, platform: req.Platform, pushToken: req.PushToken, secret: secret, ocraKey: ocraKey}
	f.mu.Unlock()
	writeJSON(w, 201, map[string]any{
		"credential_id": id,
		"otp_secret":    secret,
		"otp":           map[string]any{"digits": 6, "period": 30, "algorithm": "SHA1"},
		"ocra_key":      ocraKey,
		"ocra":          map[string]any{"suite": "OCRA-1:HOTP-SHA256-8:QH64", "question": "onepush-tx-1", "challenge_digits": 8},
	})
}

// verifyJWT checks an ES256 token signed by a live credential and returns
// its claims. wantIss, when set, must equal iss.
func (f *fakeServer) verifyJWT(raw, wantIss string) (jwt.MapClaims, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWS")
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, errors.New("bad header encoding")
	}
	var hdr map[string]any
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return nil, errors.New("bad header json")
	}
	if hdr["alg"] != "ES256" || hdr["typ"] != "JWT" {
		return nil, fmt.Errorf("bad header %v", hdr)
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(raw, claims, func(tok *jwt.Token) (any, error) {
		iss, _ := tok.Claims.(jwt.MapClaims)["iss"].(string)
		f.mu.Lock()
		defer f.mu.Unlock()
		c := f.creds[iss]
		if c == nil || c.deleted {
			return nil, errors.New("unknown credential")
		}
		return c.pub, nil
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience("onepush"),
		jwt.WithIssuedAt(), jwt.WithExpirationRequired())
	if err != nil {
		return nil, err
	}
	if aud, ok := claims["aud"].(string); !ok || aud != "onepush" {
		return nil, fmt.Errorf("aud must be the string \"onepush\", got %#v", claims["aud"])
	}
	iss, _ := claims["iss"].(string)
	if wantIss != "" && iss != wantIss {
		return nil, fmt.Errorf("iss %q, want %q", iss, wantIss)
	}
	iat, ok1 := claims["iat"].(float64)
	exp, ok2 := claims["exp"].(float64)
	if !ok1 || !ok2 || exp-iat != 60 {
		return nil, fmt.Errorf("want exp = iat+60, got iat=%v exp=%v", claims["iat"], claims["exp"])
	}
	if d := time.Since(time.Unix(int64(iat), 0)); d > 5*time.Second || d < -5*time.Second {
		return nil, fmt.Errorf("iat %v is not now", iat)
	}
	jti, _ := claims["jti"].(string)
	jb, err := base64.RawURLEncoding.DecodeString(jti)
	if err != nil || len(jb) != 16 {
		return nil, fmt.Errorf("jti %q is not 128-bit base64url", jti)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.jtis[jti] {
		return nil, errors.New("jti replayed")
	}
	f.jtis[jti] = true
	return claims, nil
}

// auth verifies the device JWT and returns the credential id.
func (f *fakeServer) auth(w http.ResponseWriter, r *http.Request) (string, bool) {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		jsonErr(w, 401, "no bearer token")
		return "", false
	}
	claims, err := f.verifyJWT(raw, "")
	if err != nil {
		jsonErr(w, 401, "device token: "+err.Error())
		return "", false
	}
	if _, has := claims["sub"]; has {
		jsonErr(w, 401, "device token must not carry sub")
		return "", false
	}
	iss, _ := claims["iss"].(string)
	return iss, true
}

// authOwn is auth for a request about the credential {id}: only its own.
func (f *fakeServer) authOwn(w http.ResponseWriter, r *http.Request) (string, bool) {
	cred, ok := f.auth(w, r)
	if ok && r.PathValue("id") != cred {
		jsonErr(w, 403, "not your credential")
		return "", false
	}
	return cred, ok
}

func (f *fakeServer) pushToken(w http.ResponseWriter, r *http.Request) {
	cred, ok := f.authOwn(w, r)
	if !ok {
		return
	}
	var req struct {
		Platform  string `json:"platform"`
		PushToken string `json:"push_token"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		jsonErr(w, 400, "bad json")
		return
	}
	f.mu.Lock()
	f.creds[cred].platform, f.creds[cred].pushToken = req.Platform, req.PushToken
	f.mu.Unlock()
	w.WriteHeader(204)
}

func (f *fakeServer) deleteCred(w http.ResponseWriter, r *http.Request) {
	cred, ok := f.authOwn(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	f.creds[cred].deleted = true
	f.mu.Unlock()
	w.WriteHeader(204)
}

func (c *fakeChal) wire() map[string]any {
	return map[string]any{"id": c.id, "kind": c.kind, "expires_at": c.expires.Format(time.RFC3339), "context": c.context}
}

func (f *fakeServer) list(w http.ResponseWriter, r *http.Request) {
	cred, ok := f.auth(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	out := []map[string]any{}
	for _, c := range f.chals {
		if c.cred == cred && c.state == "pending" && time.Now().Before(c.expires) {
			out = append(out, c.wire())
		}
	}
	f.mu.Unlock()
	writeJSON(w, 200, map[string]any{"challenges": out})
}

func (f *fakeServer) get(w http.ResponseWriter, r *http.Request) {
	cred, ok := f.auth(w, r)
	if !ok {
		return
	}
	f.mu.Lock()
	c := f.chals[r.PathValue("id")]
	f.mu.Unlock()
	if c == nil || c.cred != cred {
		jsonErr(w, 404, "unknown challenge")
		return
	}
	writeJSON(w, 200, c.wire())
}

func (f *fakeServer) decision(w http.ResponseWriter, r *http.Request) {
	cred, ok := f.auth(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	f.mu.Lock()
	c := f.chals[id]
	f.mu.Unlock()
	if c == nil || c.cred != cred {
		jsonErr(w, 404, "unknown challenge")
		return
	}
	var req struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		jsonErr(w, 400, "bad json")
		return
	}
	claims, err := f.verifyJWT(req.Token, cred)
	if err != nil {
		jsonErr(w, 401, "decision token: "+err.Error())
		return
	}
	if claims["sub"] != id {
		jsonErr(w, 401, "sub mismatch")
		return
	}
	dec, _ := claims["decision"].(string)
	if dec != "approve" && dec != "deny" && dec != "fraud" {
		jsonErr(w, 401, "bad decision")
		return
	}
	sum := sha256.Sum256([]byte(c.context))
	if claims["ctx"] != base64.RawURLEncoding.EncodeToString(sum[:]) {
		jsonErr(w, 401, "ctx hash mismatch")
		return
	}
	rec := decisionRecord{ChallengeID: id, Decision: dec}
	numRaw, hasNum := claims["number"]
	if hasNum != c.numberMatch {
		jsonErr(w, 401, "number claim presence does not match number matching")
		return
	}
	if hasNum {
		n, ok := numRaw.(float64)
		if !ok || int(n) != c.number {
			jsonErr(w, 401, "wrong number")
			return
		}
		v := int(n)
		rec.Number = &v
	}
	// The code claim: a string, with approvals of code-transfer challenges
	// only, equal to the browser's code.
	codeRaw, hasCode := claims["code"]
	if hasCode != (c.code != "" && dec == "approve") {
		jsonErr(w, 401, "code claim presence does not match code transfer")
		return
	}
	if hasCode {
		code, ok := codeRaw.(string)
		if !ok {
			jsonErr(w, 401, "code claim is not a string")
			return
		}
		rec.Code = &code
		if code != c.code {
			f.decisions <- rec
			jsonErr(w, 401, "wrong code")
			return
		}
	}
	f.mu.Lock()
	if c.state != "pending" || !time.Now().Before(c.expires) {
		f.mu.Unlock()
		jsonErr(w, 409, "already decided or expired")
		return
	}
	c.state = dec
	f.mu.Unlock()
	f.decisions <- rec
	writeJSON(w, 200, map[string]string{"status": "ok"})
}

// addChallenge creates a pending challenge for cred and, for webhook
// credentials when push is true, POSTs the push like the real server.
func (f *fakeServer) addChallenge(cred, kind, context string, numberMatch bool, number int, push bool) string {
	f.t.Helper()
	return f.add(&fakeChal{kind: kind, cred: cred, context: context, numberMatch: numberMatch, number: number}, push)
}

// addCodeChallenge is addChallenge for a code-transfer login whose
// browser shows code.
func (f *fakeServer) addCodeChallenge(cred, context, code string, push bool) string {
	f.t.Helper()
	return f.add(&fakeChal{kind: "login", cred: cred, context: context, code: code}, push)
}

func (f *fakeServer) add(c *fakeChal, push bool) string {
	f.t.Helper()
	f.mu.Lock()
	f.seq++
	c.id = fmt.Sprintf("ch-%d", f.seq)
	c.expires, c.state = time.Now().Add(2*time.Minute), "pending"
	f.chals[c.id] = c
	f.mu.Unlock()
	if push {
		f.push(c.cred, c.id, c.kind)
	}
	return c.id
}

func (f *fakeServer) push(cred, id, kind string) {
	f.t.Helper()
	f.mu.Lock()
	cr := f.creds[cred]
	platform, target := cr.platform, cr.pushToken
	f.mu.Unlock()
	if platform != "webhook" {
		return
	}
	body, _ := json.Marshal(map[string]string{"challenge_id": id, "kind": kind})
	resp, err := http.Post(target, "application/json", bytes.NewReader(body))
	if err != nil {
		f.t.Fatalf("push to %s: %v", target, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		f.t.Fatalf("push to %s: HTTP %d", target, resp.StatusCode)
	}
}

func (f *fakeServer) state(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.chals[id].state
}

func (f *fakeServer) waitDecision(t *testing.T) decisionRecord {
	t.Helper()
	select {
	case d := <-f.decisions:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("no decision reached the server")
		return decisionRecord{}
	}
}

// A context with characters JSON encoders escape (<, >, &), non-ASCII text,
// odd spacing and an unknown key: the ctx hash must cover these exact bytes.
const transferCtx = `{"user":"1001/alice", "kind":"transfer","rule":"big-transfer",` +
	`"display":[{"label":"Amount","value":"5000 JPY"},{"label":"To","value":"Bob <bob@example> & 山田"}],` +
	`"client_ip":"203.0.113.7","user_agent":"Mozilla/5.0 (X11)","number_match":false,` +
	`"created_at":"2026-01-02T03:04:05Z","future_key":{"x":[1,2]}}`

const loginCtx = `{"user":"1001/alice","kind":"login","rule":"login","display":[],"client_ip":"127.0.0.1","user_agent":"curl/8","number_match":false,"created_at":"2026-01-02T03:04:05Z"}`

// typedCtx is what a current server sends for a typed transaction; the
// user agent carries a right-to-left override the page must not obey.
const typedCtx = `{"user":"1001/alice","kind":"transaction","rule":"transfer","service":"振込","host":"bank.example.com",` +
	`"transaction":{"amount":"1500000","currency":"JPY","payee":"1234567","payee_name":"ヤマダ タロウ"},` +
	`"display":[],"client_ip":"203.0.113.7","user_agent":"Mozilla/5.0 \u202eevil","number_match":false}`

const numberCtx = `{"user":"1001/alice","kind":"login","rule":"login","client_ip":"127.0.0.1","number_match":true}`

// codeCtx is a login under code transfer: the browser shows 6 digits.
const codeCtx = `{"user":"1001/alice","kind":"login","rule":"login","client_ip":"127.0.0.1","number_match":false,"code_digits":6}`

// getChallenge fetches challenge id through the phone, as its app does.
func getChallenge(t *testing.T, p *Phone, id string) *Challenge {
	t.Helper()
	ch, err := p.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// wantStatus fails unless err is a *StatusError with status.
func wantStatus(t *testing.T, err error, status int, what string) *StatusError {
	t.Helper()
	var se *StatusError
	if !errors.As(err, &se) || se.Status != status {
		t.Fatalf("%s: %v, want status %d", what, err, status)
	}
	return se
}

// pollPhone is a phone registered without push (it polls) with a fresh
// fake server.
func pollPhone(t *testing.T) (*fakeServer, *Phone) {
	f := newFakeServer(t)
	return f, registered(t, f, "none", "")
}

func registered(t *testing.T, f *fakeServer, platform, push string, opts ...Option) *Phone {
	t.Helper()
	p, err := New(f.base, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Register(context.Background(), platform, push); err != nil {
		t.Fatal(err)
	}
	return p
}

// ---------------------------------------------------------------------------

func TestRegister(t *testing.T) {
	f := newFakeServer(t)
	now := time.Now()
	p := registered(t, f, "webhook", "http://127.0.0.1:9/push", WithClock(func() time.Time { return now }))

	id := p.CredentialID()
	if id == "" || p.OTPSecret() == "" {
		t.Fatalf("credential %q secret %q", id, p.OTPSecret())
	}
	f.mu.Lock()
	c := f.creds[id]
	f.mu.Unlock()
	if c == nil || !c.pub.Equal(&p.Key().PublicKey) {
		t.Fatal("server did not get the phone's public key")
	}
	if c.platform != "webhook" || c.pushToken != "http://127.0.0.1:9/push" {
		t.Fatalf("server got platform %q token %q", c.platform, c.pushToken)
	}
	if c.secret != p.OTPSecret() {
		t.Fatal("otp secret differs")
	}
	want, err := totp.GenerateCode(c.secret, now)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.SecurityCode()
	if err != nil || got != want || len(got) != 6 {
		t.Fatalf("security code %q (%v), want %q", got, err, want)
	}
	if pl, tok := p.PushTarget(); pl != "webhook" || tok != "http://127.0.0.1:9/push" {
		t.Fatalf("PushTarget = %q %q", pl, tok)
	}
}

func TestRegisterErrorCarriesStatusAndBody(t *testing.T) {
	f := newFakeServer(t)
	p, err := New(f.base)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Register(context.Background(), "carrier-pigeon", "")
	if se := wantStatus(t, err, 400, "Register with an unknown platform"); !strings.Contains(se.Body, "bad platform") {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "POST /credentials") || !strings.Contains(err.Error(), "400") {
		t.Fatalf("error does not say what failed: %v", err)
	}
}

func TestPendingAndGet(t *testing.T) {
	f, p := pollPhone(t)
	ctx := context.Background()

	list, err := p.Pending(ctx)
	if err != nil || len(list) != 0 {
		t.Fatalf("Pending = %v, %v; want empty", list, err)
	}
	id := f.addChallenge(p.CredentialID(), "transfer", transferCtx, false, 0, false)
	// Someone else's challenge must not show up.
	other := registered(t, f, "none", "")
	f.addChallenge(other.CredentialID(), "login", loginCtx, false, 0, false)

	list, err = p.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("Pending returned %d challenges", len(list))
	}
	ch := list[0]
	if ch.ID != id || ch.Kind != "transfer" || ch.Context != transferCtx || ch.ParseErr != nil {
		t.Fatalf("challenge = %+v", ch)
	}
	if time.Until(ch.ExpiresAt) < time.Minute {
		t.Fatalf("expires_at = %v", ch.ExpiresAt)
	}
	pc := ch.Parsed
	if pc.User != "1001/alice" || pc.Kind != "transfer" || pc.Rule != "big-transfer" ||
		pc.ClientIP != "203.0.113.7" || pc.UserAgent != "Mozilla/5.0 (X11)" || pc.NumberMatch ||
		len(pc.Display) != 2 || pc.Display[1].Label != "To" || pc.Display[1].Value != "Bob <bob@example> & 山田" {
		t.Fatalf("parsed = %+v", pc)
	}

	got := getChallenge(t, p, id)
	if got.ID != id || got.Context != transferCtx || got.Parsed.Display[0].Value != "5000 JPY" {
		t.Fatalf("Get = %+v", got)
	}

	_, err = p.Get(ctx, "nope")
	wantStatus(t, err, 404, "Get unknown")
}

func TestDecideApproveDeny(t *testing.T) {
	f, p := pollPhone(t)
	ctx := context.Background()
	a := f.addChallenge(p.CredentialID(), "transfer", transferCtx, false, 0, false)
	b := f.addChallenge(p.CredentialID(), "login", loginCtx, false, 0, false)

	cha := getChallenge(t, p, a)
	// A context altered by one byte (re-encoded compactly) must not verify:
	// the hash is over the bytes exactly as received.
	tampered := *cha
	var v any
	_ = json.Unmarshal([]byte(cha.Context), &v)
	re, _ := json.Marshal(v)
	if string(re) == cha.Context {
		t.Fatal("test context should not survive re-encoding unchanged")
	}
	tampered.Context = string(re)
	if st, err := p.Decide(ctx, &tampered, Approve, 0); err != nil || st != 401 {
		t.Fatalf("tampered context: status %d err %v, want 401", st, err)
	}

	if st, err := p.Decide(ctx, cha, Approve, 0); err != nil || st != 200 {
		t.Fatalf("approve: status %d err %v", st, err)
	}
	if d := f.waitDecision(t); d.ChallengeID != a || d.Decision != "approve" || d.Number != nil {
		t.Fatalf("server recorded %+v", d)
	}

	chb := getChallenge(t, p, b)
	if st, err := p.Decide(ctx, chb, Deny, 0); err != nil || st != 200 {
		t.Fatalf("deny: status %d err %v", st, err)
	}
	if d := f.waitDecision(t); d.ChallengeID != b || d.Decision != "deny" {
		t.Fatalf("server recorded %+v", d)
	}
	if f.state(a) != "approve" || f.state(b) != "deny" {
		t.Fatalf("states %s %s", f.state(a), f.state(b))
	}

	// Deciding again is a conflict.
	if st, err := p.Decide(ctx, cha, Deny, 0); err != nil || st != 409 {
		t.Fatalf("second decision: status %d err %v, want 409", st, err)
	}
	if list, err := p.Pending(ctx); err != nil || len(list) != 0 {
		t.Fatalf("Pending after decisions = %v, %v", list, err)
	}
}

func TestDecisionTokenClaims(t *testing.T) {
	f, p := pollPhone(t)
	ctx := context.Background()
	id := f.addChallenge(p.CredentialID(), "login", loginCtx, false, 0, false)
	other := f.addChallenge(p.CredentialID(), "login", loginCtx, false, 0, false)
	ch := getChallenge(t, p, id)
	tok, err := p.DecisionToken(ch, Fraud, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Inspect the claims independently of the fake server.
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return &p.Key().PublicKey, nil },
		jwt.WithValidMethods([]string{"ES256"}))
	if err != nil || !parsed.Valid {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(loginCtx))
	if claims["sub"] != id || claims["iss"] != p.CredentialID() || claims["aud"] != "onepush" ||
		claims["decision"] != "fraud" || claims["ctx"] != base64.RawURLEncoding.EncodeToString(sum[:]) {
		t.Fatalf("claims = %v", claims)
	}
	if _, has := claims["number"]; has {
		t.Fatal("number claim without number matching")
	}

	// The same token posted for another challenge is refused (sub).
	st, body, err := p.PostDecisionToken(ctx, other, tok)
	if err != nil || st != 401 || !bytes.Contains(body, []byte("sub")) {
		t.Fatalf("wrong sub: %d %s %v", st, body, err)
	}
	// Garbage is refused.
	if st, _, err := p.PostDecisionToken(ctx, id, "not.a.jwt"); err != nil || st != 401 {
		t.Fatalf("garbage: %d %v", st, err)
	}
	// The fake server burnt that jti; a fresh token for the right
	// challenge works once.
	tok2, err := p.DecisionToken(ch, Fraud, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st, _, err := p.PostDecisionToken(ctx, id, tok2); err != nil || st != 200 {
		t.Fatalf("genuine: %d %v", st, err)
	}
	if st, _, err := p.PostDecisionToken(ctx, id, tok2); err != nil || st != 401 {
		t.Fatalf("replayed token: %d %v, want 401", st, err)
	}
	if d := f.waitDecision(t); d.Decision != "fraud" {
		t.Fatalf("recorded %+v", d)
	}
}

func TestNumberMatch(t *testing.T) {
	f, p := pollPhone(t)
	ctx := context.Background()
	id := f.addChallenge(p.CredentialID(), "login", numberCtx, true, 47, false)
	ch := getChallenge(t, p, id)
	if !ch.Parsed.NumberMatch {
		t.Fatal("number_match not parsed")
	}
	if st, _ := p.Decide(ctx, ch, Approve, 12); st != 401 {
		t.Fatalf("wrong number: status %d", st)
	}
	if st, err := p.Decide(ctx, ch, Approve, 47); err != nil || st != 200 {
		t.Fatalf("right number: %d %v", st, err)
	}
	d := f.waitDecision(t)
	if d.Number == nil || *d.Number != 47 {
		t.Fatalf("recorded %+v", d)
	}
}

func TestClockIsUsedForTokens(t *testing.T) {
	f := newFakeServer(t)
	var mu sync.Mutex
	now := time.Now()
	p := registered(t, f, "none", "", WithClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now }))
	if _, err := p.Pending(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(-10 * time.Minute)
	mu.Unlock()
	_, err := p.Pending(context.Background())
	wantStatus(t, err, 401, "stale clock")
}

func TestUpdatePushTokenAndUninstall(t *testing.T) {
	f, p := pollPhone(t)
	ctx := context.Background()
	if err := p.UpdatePushToken(ctx, "webhook", "http://127.0.0.1:1/push"); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	c := f.creds[p.CredentialID()]
	pl, tok := c.platform, c.pushToken
	f.mu.Unlock()
	if pl != "webhook" || tok != "http://127.0.0.1:1/push" {
		t.Fatalf("server has %q %q", pl, tok)
	}
	if err := p.Uninstall(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := p.Pending(ctx)
	wantStatus(t, err, 401, "after uninstall")
}

func TestWaitPending(t *testing.T) {
	f, p := pollPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := p.WaitPending(ctx, 10*time.Millisecond)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("empty wait: %v", err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		f.addChallenge(p.CredentialID(), "login", loginCtx, false, 0, false)
	}()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ch, err := p.WaitPending(ctx, 10*time.Millisecond)
	if err != nil || ch.Kind != "login" || ch.Context != loginCtx {
		t.Fatalf("WaitPending = %+v, %v", ch, err)
	}
}

func TestStateRoundTrip(t *testing.T) {
	f, p := pollPhone(t)
	data, err := p.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	q, err := Restore("", data)
	if err != nil {
		t.Fatal(err)
	}
	if q.CredentialID() != p.CredentialID() || q.OTPSecret() != p.OTPSecret() || !q.Key().Equal(p.Key()) || q.Base() != p.Base() ||
		q.OCRAKey() == "" || q.OCRAKey() != p.OCRAKey() || q.OCRA() != p.OCRA() {
		t.Fatal("restored phone differs")
	}
	// The restored phone is accepted by the server.
	id := f.addChallenge(p.CredentialID(), "login", loginCtx, false, 0, false)
	ch, err := q.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := q.Decide(context.Background(), ch, Approve, 0); err != nil || st != 200 {
		t.Fatalf("decide with restored phone: %d %v", st, err)
	}
}

// ---------------------------------------------------------------------------
// Simulator

func startSim(t *testing.T, f *fakeServer, auto string, platform string) (*Simulator, *httptest.Server) {
	t.Helper()
	var sim *Simulator
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sim.ServeHTTP(w, r) }))
	t.Cleanup(hs.Close)
	push := ""
	if platform == "webhook" {
		push = hs.URL + "/push"
	}
	p := registered(t, f, platform, push)
	sim = NewSimulator(p, auto, nil)
	return sim, hs
}

func TestSimulatorPushAutoApprove(t *testing.T) {
	f := newFakeServer(t)
	sim, _ := startSim(t, f, "approve", "webhook")
	// No Run: the decision must come from the push alone.
	id := f.addChallenge(sim.Phone().CredentialID(), "transfer", transferCtx, false, 0, true)
	d := f.waitDecision(t)
	if d.ChallengeID != id || d.Decision != "approve" {
		t.Fatalf("recorded %+v", d)
	}
	h := waitHistory(t, sim, 1)
	if h[0].Status != 200 || h[0].Source != "auto" || h[0].User != "1001/alice" {
		t.Fatalf("history %+v", h)
	}
	// A repeated push for the same challenge does not decide twice.
	body, _ := json.Marshal(map[string]string{"challenge_id": id, "kind": "transfer"})
	resp, err := http.Post(sim.Phone().pushTargetURL(t), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(200 * time.Millisecond)
	if n := len(sim.History()); n != 1 {
		t.Fatalf("decided %d times", n)
	}
}

func (p *Phone) pushTargetURL(t *testing.T) string {
	_, tok := p.PushTarget()
	if tok == "" {
		t.Fatal("no push target")
	}
	return tok
}

func waitHistory(t *testing.T, sim *Simulator, n int) []Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if h := sim.History(); len(h) >= n {
			return h
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("history never reached %d events", n)
	return nil
}

func TestSimulatorAutoDenyByPolling(t *testing.T) {
	f := newFakeServer(t)
	sim, _ := startSim(t, f, "deny", "none")
	sim.PollInterval = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Run(ctx) }()
	id := f.addChallenge(sim.Phone().CredentialID(), "login", loginCtx, false, 0, false)
	// Number matching needs a human: auto mode leaves it alone.
	nm := f.addChallenge(sim.Phone().CredentialID(), "login", numberCtx, true, 5, false)
	d := f.waitDecision(t)
	if d.ChallengeID != id || d.Decision != "deny" {
		t.Fatalf("recorded %+v", d)
	}
	time.Sleep(100 * time.Millisecond)
	if f.state(nm) != "pending" {
		t.Fatal("auto mode decided a number-matching prompt")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func TestSimulatorPageListsPromptAndDecides(t *testing.T) {
	f := newFakeServer(t)
	sim, hs := startSim(t, f, "off", "none")
	runSim(t, sim)

	id := f.addChallenge(sim.Phone().CredentialID(), "transfer", transferCtx, false, 0, false)
	waitPrompt(t, sim)

	resp, page := simPage(t, hs.URL)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("page: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	code, _ := sim.Phone().SecurityCode()
	for _, want := range []string{
		`name="viewport"`,
		`id="prompt-` + id + `"`,
		"1001/alice", "transfer", "Amount", "5000 JPY",
		"Bob &lt;bob@example&gt; &amp; 山田", // escaped, not raw HTML
		"203.0.113.7",
		`value="approve">Approve</button>`, `value="deny"`,
		`<input type="hidden" name="id" value="` + id + `">`,
		code,
	} {
		if !strings.Contains(string(page), want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(string(page), "<bob@example>") {
		t.Error("context value not escaped")
	}
	if strings.Contains(string(page), "src=") || strings.Contains(string(page), "href=") {
		t.Error("page references external assets")
	}
	m := csrfRE.FindSubmatch(page)
	if m == nil {
		t.Fatal("no csrf field")
	}

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// A forged form post (no csrf) is refused and decides nothing.
	if st := postDecide(t, noRedirect, hs.URL, url.Values{"id": {id}, "decision": {"approve"}}); st != 403 || f.state(id) != "pending" {
		t.Fatalf("forged post: %d, state %s", st, f.state(id))
	}

	if st := postDecide(t, noRedirect, hs.URL, url.Values{"id": {id}, "decision": {"approve"}, "csrf": {string(m[1])}}); st != http.StatusSeeOther {
		t.Fatalf("decide: %d", st)
	}
	if d := f.waitDecision(t); d.ChallengeID != id || d.Decision != "approve" {
		t.Fatalf("recorded %+v", d)
	}
	if len(sim.PendingPrompts()) != 0 {
		t.Fatal("decided prompt still listed")
	}
	_, page = simPage(t, hs.URL)
	if !strings.Contains(string(page), "No pending prompts") || !strings.Contains(string(page), "HTTP 200") {
		t.Fatalf("page after decision:\n%s", page)
	}
}

func TestSimulatorPageNumberMatchForm(t *testing.T) {
	f := newFakeServer(t)
	sim, hs := startSim(t, f, "approve", "webhook")
	id := f.addChallenge(sim.Phone().CredentialID(), "login", numberCtx, true, 31, true)
	waitPrompt(t, sim)
	_, page := simPage(t, hs.URL)
	if !strings.Contains(string(page), `name="number"`) || strings.Contains(string(page), `http-equiv="refresh"`) {
		t.Fatal("number-matching prompt should show a number field and not auto-refresh")
	}
	m := csrfRE.FindSubmatch(page)
	if m == nil {
		t.Fatal("no csrf")
	}
	postDecide(t, http.DefaultClient, hs.URL, url.Values{"id": {id}, "decision": {"approve"}, "number": {"31"}, "csrf": {string(m[1])}})
	d := f.waitDecision(t)
	if d.ChallengeID != id || d.Number == nil || *d.Number != 31 {
		t.Fatalf("recorded %+v", d)
	}
}

// TestSimulatorShowsTypedTransaction: the phone shows service, site, amount
// (grouped for reading, from the raw digits), payee and payee name from the
// typed members, and never obeys a bidi override in what it shows.
func TestSimulatorShowsTypedTransaction(t *testing.T) {
	f := newFakeServer(t)
	sim, hs := startSim(t, f, "off", "none")
	runSim(t, sim)
	f.addChallenge(sim.Phone().CredentialID(), "transaction", typedCtx, false, 0, false)
	waitPrompt(t, sim)
	ch := sim.PendingPrompts()[0]
	if tx := ch.Parsed.Transaction; tx == nil || tx.Amount != "1500000" || tx.Currency != "JPY" || tx.Payee != "1234567" || ch.Parsed.Service != "振込" || ch.Parsed.Host != "bank.example.com" {
		t.Fatalf("parsed context = %+v / %+v", ch.Parsed, ch.Parsed.Transaction)
	}
	_, page := simPage(t, hs.URL)
	for _, want := range []string{
		`<dd class="service">振込</dd>`,
		`<dd class="amount">1,500,000 JPY</dd>`,
		`<dd class="payee">1234567</dd>`,
		"ヤマダ タロウ",
		`<dd class="host">bank.example.com</dd>`,
		`Mozilla/5.0 \u202Eevil`,
	} {
		if !strings.Contains(string(page), want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.ContainsRune(string(page), '\u202e') {
		t.Error("page contains a raw right-to-left override")
	}
}

func TestAmountIsGroupedForReadingOnly(t *testing.T) {
	for in, want := range map[string]string{"0": "0", "999": "999", "1000": "1,000", "250000": "250,000", "1500000": "1,500,000", "12a": "12a", "1\u202e2": `1\u202E2`} {
		if got := amount(in); got != want {
			t.Errorf("amount(%q) = %q, want %q", in, got, want)
		}
	}
}

// simPage fetches the simulator's page at base.
func simPage(t *testing.T, base string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, page
}

// postDecide posts the simulator's decision form and returns the status.
func postDecide(t *testing.T, c *http.Client, base string, form url.Values) int {
	t.Helper()
	resp, err := c.PostForm(base+"/decide", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// runSim runs the simulator, polling every 20ms, until the test ends.
func runSim(t *testing.T, sim *Simulator) {
	sim.PollInterval = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go sim.Run(ctx)
}

// waitPrompt waits until the simulator lists a prompt.
func waitPrompt(t *testing.T, sim *Simulator) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(sim.PendingPrompts()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("prompt never listed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
