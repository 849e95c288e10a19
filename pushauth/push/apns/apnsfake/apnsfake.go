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
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/onepush/onepush/pushauth/push/internal/fakeprovider"
	"github.com/onepush/onepush/pushauth/push/pushtest"
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

// Attempt is the request as the push contract (pushtest) reads it.
func (r Request) Attempt() pushtest.Attempt {
	return pushtest.Attempt{At: r.At, Token: r.Token, Status: r.Status}
}

// Server is a running fake. Its methods are safe for concurrent use; the
// recorder's (ScriptReplies, SetDelay, Requests, RequestsFor, Count,
// MaxInFlight, Reset) are promoted.
type Server struct {
	*httptest.Server
	*fakeprovider.Recorder[Request, Reply]
	opts Options
}

// New starts a fake APNs server on a loopback port; Close it when done.
// Point apns2 at it with Client.Host = s.URL and trust s.RootCAs().
func New(opts Options) *Server {
	s := &Server{opts: opts, Recorder: fakeprovider.New(Reply{Status: http.StatusOK}, opts.Delay, func(r Request) string { return r.Token })}
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

// MarkDead makes every later request to token fail: reason "Unregistered"
// or "ExpiredToken" answers 410 with a timestamp, any other (e.g.
// "BadDeviceToken", "DeviceTokenNotForTopic") answers 400.
func (s *Server) MarkDead(token, reason string) {
	st := http.StatusBadRequest
	if reason == "Unregistered" || reason == "ExpiredToken" {
		st = http.StatusGone
	}
	s.Stick(token, Reply{Status: st, Reason: reason})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	defer s.Enter()()
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
		reply = s.Next(token)
	}
	req.Status, req.Reason = reply.Status, reply.Reason
	if !s.Record(r.Context(), req) {
		return
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
