package pushauth_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/httpapi"
	"github.com/onepush/onepush/pushauth/pushauthtest"
	"github.com/onepush/onepush/pushauth/store/memory"
)

// tokFixture is an engine with one enrolled user whose phone key is key, and one
// pending challenge for that user.
type tokFixture struct {
	e    *pushauth.Engine
	key  *ecdsa.PrivateKey
	cred *pushauth.Credential
	ch   *pushauth.Challenge
}

func newTokFixture(t testing.TB) *tokFixture {
	t.Helper()
	e, _ := pushauthtest.Engine(t, pushauth.Config{Store: memory.New(nil), Logger: pushauthtest.Quiet()})
	key, der := pushauthtest.Key(t)
	ctx := context.Background()
	cred, err := e.RegisterCredential(ctx, der, "none", "")
	if err != nil {
		t.Fatal(err)
	}
	u := &pushauth.User{Key: "1001/alice", CredentialID: cred.ID, State: pushauth.UserActive}
	if err := e.Store().PutUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	ch, err := e.Start(ctx, u, pushauth.ChallengeSpec{UserKey: u.Key, Rule: "login", Kind: "login", Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return &tokFixture{e: e, key: key, cred: cred, ch: ch}
}

func (f *tokFixture) claims(mod func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	var jti [12]byte
	_, _ = rand.Read(jti[:])
	c := jwt.MapClaims{
		"iss": f.cred.ID, "aud": pushauth.Audience, "sub": f.ch.ID, "iat": now.Unix(), "exp": now.Add(60 * time.Second).Unix(),
		"jti": base64.RawURLEncoding.EncodeToString(jti[:]), "decision": pushauth.DecisionApprove, "ctx": pushauth.CtxHash(f.ch.Context),
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func signWith(t testing.TB, m jwt.SigningMethod, c jwt.MapClaims, key any, hdr map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	for k, v := range hdr {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTokenAttacksAreRejected posts forged decision tokens to the device API and
// checks each gets its documented status and leaves the challenge pending (so the held
// request is never released), and that a genuine token still decides it afterwards.
func TestTokenAttacksAreRejected(t *testing.T) {
	f := newTokFixture(t)
	api := httpapi.NewDevice(f.e, "", 0)
	srv := httptest.NewServer(api)
	defer srv.Close()

	// Anything an attacker points the verifier at (jku, x5u) must never be fetched.
	var fetched atomic.Int32
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fetched.Add(1) }))
	defer evil.Close()

	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	attackerJWK := map[string]any{
		"kty": "EC", "crv": "P-256",
		"x": base64.RawURLEncoding.EncodeToString(attacker.PublicKey.X.FillBytes(make([]byte, 32))),
		"y": base64.RawURLEncoding.EncodeToString(attacker.PublicKey.Y.FillBytes(make([]byte, 32))),
	}
	now := time.Now()
	es := jwt.SigningMethodES256
	valid := func(mod func(jwt.MapClaims)) string { return signWith(t, es, f.claims(mod), f.key, nil) }
	// A header the library does not know: re-sign by hand with alg spelled differently.
	lowerAlg := func() string {
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"es256","typ":"JWT"}`))
		p, _ := json.Marshal(f.claims(nil))
		signing := h + "." + base64.RawURLEncoding.EncodeToString(p)
		sig, _ := es.Sign(signing, f.key)
		return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
	}()
	cases := []struct {
		name   string
		body   string // raw request body; "" = {"token": token}
		token  string
		status int
	}{
		{"ES384 header", "", signWith(t, jwt.SigningMethodES384, f.claims(nil), p384, nil), 401},
		{"ES512 header", "", signWith(t, jwt.SigningMethodES512, f.claims(nil), p521, nil), 401},
		{"RS256 header", "", signWith(t, jwt.SigningMethodRS256, f.claims(nil), rsaKey, nil), 401},
		{"PS256 header", "", signWith(t, jwt.SigningMethodPS256, f.claims(nil), rsaKey, nil), 401},
		{"HS256 keyed with the public key bytes", "", signWith(t, jwt.SigningMethodHS256, f.claims(nil), f.cred.PublicKey, nil), 401},
		{"alg in lower case", "", lowerAlg, 401},
		{"embedded JWK of the attacker's key", "", signWith(t, es, f.claims(nil), attacker, map[string]any{"jwk": attackerJWK}), 401},
		{"kid path traversal", "", signWith(t, es, f.claims(nil), attacker, map[string]any{"kid": "../../../../dev/null"}), 401},
		{"kid SQL", "", signWith(t, es, f.claims(nil), attacker, map[string]any{"kid": "x' UNION SELECT 'key' --"}), 401},
		{"kid naming another credential", "", signWith(t, es, f.claims(func(c jwt.MapClaims) { c["iss"] = "ATTACKER" }), attacker, map[string]any{"kid": f.cred.ID}), 401},
		{"jku to the attacker's JWKS", "", signWith(t, es, f.claims(nil), attacker, map[string]any{"jku": evil.URL + "/jwks.json"}), 401},
		{"x5u to the attacker's certificate", "", signWith(t, es, f.claims(nil), attacker, map[string]any{"x5u": evil.URL + "/cert.pem"}), 401},
		{"oversized token (5 KiB claim)", "", valid(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("A", 5<<10) }), 401},
		{"oversized jti", "", valid(func(c jwt.MapClaims) { c["jti"] = strings.Repeat("j", 200) }), 401},
		{"oversized iss", "", signWith(t, es, f.claims(func(c jwt.MapClaims) { c["iss"] = strings.Repeat("I", 100) }), f.key, nil), 401},
		{"iat beyond the leeway in the future", "", valid(func(c jwt.MapClaims) {
			c["iat"], c["exp"] = now.Add(5*time.Minute).Unix(), now.Add(6*time.Minute).Unix()
		}), 401},
		{"nbf in the future", "", valid(func(c jwt.MapClaims) { c["nbf"] = now.Add(5 * time.Minute).Unix() }), 401},
		{"iat missing", "", valid(func(c jwt.MapClaims) { delete(c, "iat") }), 401},
		{"exp missing", "", valid(func(c jwt.MapClaims) { delete(c, "exp") }), 401},
		{"exp before iat", "", valid(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Second).Unix() }), 401},
		{"iat not a number", "", valid(func(c jwt.MapClaims) { c["iat"] = "yesterday" }), 401},
		{"aud as a list with another audience first", "", valid(func(c jwt.MapClaims) { c["aud"] = []string{"other"} }), 401},
		{"decision in upper case", "", valid(func(c jwt.MapClaims) { c["decision"] = "APPROVE" }), 401},
		{"extra segment", "", valid(nil) + ".AAAA", 401},
		{"signature stripped", "", strings.Join(strings.Split(valid(nil), ".")[:2], ".") + ".", 401},
		{"decision body over 16 KiB", `{"token":"` + strings.Repeat("A", 17<<10) + `"}`, "", 400},
		{"unknown body field", `{"token":"x","approve":true}`, "", 400},
	}
	for _, tc := range cases {
		body := tc.body
		if body == "" {
			b, _ := json.Marshal(map[string]string{"token": tc.token})
			body = string(b)
		}
		resp, err := http.Post(srv.URL+httpapi.DefaultDeviceBase+"/challenges/"+f.ch.ID+"/decision", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}
	if n := fetched.Load(); n != 0 {
		t.Errorf("the verifier fetched attacker URLs %d times", n)
	}
	c, err := f.e.Store().GetChallenge(context.Background(), f.ch.ID)
	if err != nil || c.Status != pushauth.StatusPending {
		t.Fatalf("after the attacks the challenge is %v %v, want still pending", c, err)
	}
	// The boundary: iat 20s ahead is inside the 30s leeway and is accepted, so the
	// refusals above are about the attacks, not a broken setup.
	ok := valid(func(c jwt.MapClaims) {
		c["iat"], c["exp"] = now.Add(20*time.Second).Unix(), now.Add(80*time.Second).Unix()
	})
	resp, err := http.Post(srv.URL+httpapi.DefaultDeviceBase+"/challenges/"+f.ch.ID+"/decision", "application/json",
		strings.NewReader(`{"token":"`+ok+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("genuine token within the clock-skew leeway: status %d, want 200", resp.StatusCode)
	}
}

// FuzzVerifyDeviceToken feeds arbitrary strings to Decide (and so VerifyDeviceToken):
// it never panics, and every refusal is one the device API maps to a status.
func FuzzVerifyDeviceToken(f *testing.F) {
	fx := newTokFixture(f)
	f.Add(signWith(f, jwt.SigningMethodES256, fx.claims(nil), fx.key, nil))
	f.Add(signWith(f, jwt.SigningMethodES256, fx.claims(nil), fx.key, map[string]any{"kid": "../x", "jku": "http://127.0.0.1:1/"}))
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		_, err := fx.e.Decide(context.Background(), fx.ch.ID, raw)
		if err == nil {
			return // only a seed signed with the real key can get here, once
		}
		if !errors.Is(err, pushauth.ErrBadToken) && !errors.Is(err, pushauth.ErrChallengeNotFound) && !errors.Is(err, pushauth.ErrConflict) {
			t.Fatalf("unexpected error class: %v", err)
		}
	})
}

// FuzzDecideClaims signs fuzzed header and claims JSON with the credential's real key,
// so the claim checks themselves are exercised behind a valid signature: no panic, and
// anything accepted satisfies every documented rule.
func FuzzDecideClaims(f *testing.F) {
	fx := newTokFixture(f)
	good, _ := json.Marshal(fx.claims(nil))
	f.Add(`{"alg":"ES256","typ":"JWT"}`, string(good))
	f.Add(`{"alg":"ES256","kid":"../../etc/passwd","jku":"http://127.0.0.1:1/"}`, `{"iss":"`+fx.cred.ID+`","aud":["onepush"],"iat":1e300,"exp":-1}`)
	f.Add(`{"alg":"ES256","crit":["exp"]}`, `{"iss":"`+fx.cred.ID+`","aud":"onepush","iat":"x","exp":null,"number":1e99}`)
	f.Fuzz(func(t *testing.T, header, payload string) {
		signing := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
		sig, err := jwt.SigningMethodES256.Sign(signing, fx.key)
		if err != nil {
			t.Skip()
		}
		raw := signing + "." + base64.RawURLEncoding.EncodeToString(sig)
		claims, cred, err := fx.e.VerifyDeviceToken(context.Background(), raw)
		if err != nil {
			if !errors.Is(err, pushauth.ErrBadToken) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if cred.ID != fx.cred.ID || claims.Issuer != fx.cred.ID {
			t.Fatalf("accepted for credential %q / iss %q", cred.ID, claims.Issuer)
		}
		if claims.IssuedAt == nil || claims.ExpiresAt == nil || claims.ID == "" {
			t.Fatalf("accepted without iat, exp or jti: %+v", claims)
		}
		if life := claims.ExpiresAt.Sub(claims.IssuedAt.Time); life <= 0 || life > pushauth.MaxTokenLifetime {
			t.Fatalf("accepted with lifetime %s", life)
		}
		if !bytes.Contains([]byte(payload), []byte(pushauth.Audience)) {
			t.Fatalf("accepted without the audience: %s", payload)
		}
		if claims.IssuedAt.After(time.Now().Add(pushauth.TokenLeeway(fx.e) + time.Second)) {
			t.Fatalf("accepted with iat %s in the future", claims.IssuedAt)
		}
	})
}
