// Package apnsfake is a protocol-level APNs server for tests: HTTP/2 over
// TLS, provider-token or client-certificate auth, scripted Apple replies.
package apnsfake

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Options configures a Server.
type Options struct {
	// TeamID and KeyID are what a provider token must carry (iss claim and
	// kid header); PublicKey verifies its ES256 signature. Set these for
	// token auth.
	TeamID    string
	KeyID     string
	PublicKey *ecdsa.PublicKey
	// ClientCAs, when set, makes the server require a client certificate
	// signed by one of them (certificate auth); a request then needs no
	// provider token.
	ClientCAs *x509.CertPool
	// Topic, when set, is the only apns-topic accepted (else 400
	// TopicDisallowed).
	Topic string
	// Delay is how long each request is held before it is answered.
	Delay time.Duration
}

// Reply is one scripted answer.
type Reply struct {
	Status int
	Reason string
}

// Request is one request as the server saw it.
type Request struct {
	At      time.Time
	Token   string
	Header  http.Header
	Body    []byte
	Payload map[string]any // Body decoded, nil when it is not a JSON object
	// Status and Reason are what the server answered.
	Status int
	Reason string
}

// Server is a running fake. Its methods are safe for concurrent use.
type Server struct {
	*httptest.Server
	opts Options

	mu       sync.Mutex
	scripts  map[string][]Reply
	sticky   map[string]Reply
	requests []Request
	delay    time.Duration

	inFlight    atomic.Int64
	maxInFlight atomic.Int64
}

// New starts a fake APNs server on a loopback port; Close it when done.
// Point apns2 at it with Client.Host = s.URL and trust s.RootCAs().
func New(opts Options) *Server {
	s := &Server{opts: opts, scripts: map[string][]Reply{}, sticky: map[string]Reply{}, delay: opts.Delay}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.EnableHTTP2 = true
	s.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.ClientCAs != nil {
		s.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		s.TLS.ClientCAs = opts.ClientCAs
	}
	s.StartTLS()
	return s
}

// RootCAs is a pool that trusts the server's certificate.
func (s *Server) RootCAs() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.Certificate())
	return p
}

// DefaultReason is the reason the server gives for a scripted status.
func DefaultReason(status int) string {
	switch status {
	case 400:
		return "BadDeviceToken"
	case 403:
		return "Forbidden"
	case 404:
		return "BadPath"
	case 410:
		return "Unregistered"
	case 413:
		return "PayloadTooLarge"
	case 429:
		return "TooManyRequests"
	case 500:
		return "InternalServerError"
	case 503:
		return "ServiceUnavailable"
	}
	return ""
}

// Script queues answers for token: each request to it takes the next one
// (with DefaultReason); once the script is used up the token gets 200.
func (s *Server) Script(token string, statuses ...int) {
	replies := make([]Reply, len(statuses))
	for i, st := range statuses {
		replies[i] = Reply{Status: st, Reason: DefaultReason(st)}
	}
	s.ScriptReplies(token, replies...)
}

// ScriptReplies queues explicit answers for token.
func (s *Server) ScriptReplies(token string, replies ...Reply) {
	s.mu.Lock()
	s.scripts[token] = append(s.scripts[token], replies...)
	s.mu.Unlock()
}

// MarkDead makes every later request to token fail: reason "Unregistered"
// or "ExpiredToken" answers 410 with a timestamp, any other (e.g.
// "BadDeviceToken", "DeviceTokenNotForTopic") answers 400.
func (s *Server) MarkDead(token, reason string) {
	st := http.StatusBadRequest
	if reason == "Unregistered" || reason == "ExpiredToken" {
		st = http.StatusGone
	}
	s.mu.Lock()
	s.sticky[token] = Reply{Status: st, Reason: reason}
	s.mu.Unlock()
}

// SetDelay changes how long each later request is held.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// Requests returns a copy of every request received so far, in order of
// arrival.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// RequestsFor returns the requests addressed to token.
func (s *Server) RequestsFor(token string) []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Token == token {
			out = append(out, r)
		}
	}
	return out
}

// Count is the number of requests received so far.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// MaxInFlight is the largest number of requests the server was handling
// at the same moment.
func (s *Server) MaxInFlight() int { return int(s.maxInFlight.Load()) }

// Reset forgets recorded requests, scripts and the in-flight maximum.
func (s *Server) Reset() {
	s.mu.Lock()
	s.requests = nil
	s.scripts = map[string][]Reply{}
	s.sticky = map[string]Reply{}
	s.mu.Unlock()
	s.maxInFlight.Store(s.inFlight.Load())
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		m := s.maxInFlight.Load()
		if n <= m || s.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	at := time.Now()
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	token := strings.TrimPrefix(r.URL.Path, "/3/device/")
	req := Request{At: at, Token: token, Header: r.Header.Clone(), Body: body}
	var obj map[string]any
	if json.Unmarshal(body, &obj) == nil {
		req.Payload = obj
	}

	reply := s.check(r, token, body, obj)
	if reply.Status == 0 {
		reply = s.next(token)
	}
	req.Status, req.Reason = reply.Status, reply.Reason
	s.mu.Lock()
	s.requests = append(s.requests, req)
	delay := s.delay
	s.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	w.Header().Set("apns-id", newUUID())
	if reply.Status == http.StatusOK {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(reply.Status)
	out := map[string]any{"reason": reply.Reason}
	if reply.Status == http.StatusGone {
		out["timestamp"] = time.Now().UnixMilli()
	}
	_ = json.NewEncoder(w).Encode(out)
}

// next pops token's script, or its sticky answer, or 200.
func (s *Server) next(token string) Reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.scripts[token]; len(q) > 0 {
		s.scripts[token] = q[1:]
		return q[0]
	}
	if r, ok := s.sticky[token]; ok {
		return r
	}
	return Reply{Status: http.StatusOK}
}

// check validates the request as APNs does; a zero Reply means it passed.
func (s *Server) check(r *http.Request, token string, body []byte, obj map[string]any) Reply {
	bad := func(status int, reason string) Reply { return Reply{Status: status, Reason: reason} }
	if r.Method != http.MethodPost {
		return bad(405, "MethodNotAllowed")
	}
	if !strings.HasPrefix(r.URL.Path, "/3/device/") {
		return bad(404, "BadPath")
	}
	if token == "" {
		return bad(400, "MissingDeviceToken")
	}
	if _, err := hex.DecodeString(token); err != nil {
		return bad(400, "BadDeviceToken")
	}
	if r.ProtoMajor != 2 {
		return bad(400, "BadPath") // APNs speaks HTTP/2 only
	}
	if s.opts.ClientCAs != nil {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			return bad(403, "BadCertificate")
		}
	} else if rep := s.checkProviderToken(r.Header.Get("Authorization")); rep.Status != 0 {
		return rep
	}
	if len(r.Header.Values("apns-topic")) > 1 || len(r.Header.Values("apns-priority")) > 1 {
		return bad(400, "DuplicateHeaders")
	}
	topic := r.Header.Get("apns-topic")
	switch {
	case topic == "":
		return bad(400, "MissingTopic")
	case s.opts.Topic != "" && topic != s.opts.Topic:
		return bad(400, "TopicDisallowed")
	}
	if pt := r.Header.Get("apns-push-type"); pt != "alert" {
		return bad(400, "InvalidPushType")
	}
	if p := r.Header.Get("apns-priority"); p != "" && p != "5" && p != "10" {
		return bad(400, "BadPriority")
	}
	if e := r.Header.Get("apns-expiration"); e != "" {
		if _, err := strconv.ParseInt(e, 10, 64); err != nil {
			return bad(400, "BadExpirationDate")
		}
	}
	if len(r.Header.Get("apns-collapse-id")) > 64 {
		return bad(400, "BadCollapseId")
	}
	if len(body) == 0 {
		return bad(400, "PayloadEmpty")
	}
	if len(body) > 4096 {
		return bad(413, "PayloadTooLarge")
	}
	if _, ok := obj["aps"].(map[string]any); !ok {
		return bad(400, "PayloadEmpty")
	}
	return Reply{}
}

func (s *Server) checkProviderToken(h string) Reply {
	const prefix = "bearer "
	if h == "" {
		return Reply{403, "MissingProviderToken"}
	}
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return Reply{403, "InvalidProviderToken"}
	}
	if s.opts.PublicKey == nil {
		return Reply{403, "InvalidProviderToken"}
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(h[len(prefix):], claims, func(t *jwt.Token) (any, error) {
		if kid, _ := t.Header["kid"].(string); kid != s.opts.KeyID {
			return nil, fmt.Errorf("kid %q", kid)
		}
		return s.opts.PublicKey, nil
	}, jwt.WithValidMethods([]string{"ES256"}))
	if err != nil {
		return Reply{403, "InvalidProviderToken"}
	}
	if iss, _ := claims["iss"].(string); iss != s.opts.TeamID {
		return Reply{403, "InvalidProviderToken"}
	}
	iat, ok := claims["iat"].(float64)
	if !ok {
		return Reply{403, "InvalidProviderToken"}
	}
	// APNs refuses tokens older than an hour.
	issued := time.Unix(int64(iat), 0)
	if time.Since(issued) > time.Hour || time.Until(issued) > time.Minute {
		return Reply{403, "ExpiredProviderToken"}
	}
	return Reply{}
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return strings.ToUpper(h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:])
}
