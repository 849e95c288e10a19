// Package fcmfake is a protocol-level FCM HTTP v1 server for tests: an
// OAuth2 token endpoint, messages:send with bearer checks, Google's errors.
package fcmfake

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/onepush/onepush/pushauth/push/internal/fakeprovider"
	"github.com/onepush/onepush/pushauth/push/pushtest"
)

// Options configures a Server.
type Options struct {
	// Project is the only project ID accepted in the send path (else 404).
	// Empty accepts any.
	Project string
	// Delay is how long each send is held before it is answered.
	Delay time.Duration
}

// Reply is one scripted answer to a send.
type Reply struct {
	Status int
	// ErrorStatus is the google.rpc status name (UNAVAILABLE …) and
	// ErrorCode the FcmError code (UNREGISTERED …); Message is free text.
	ErrorStatus string
	ErrorCode   string
	Message     string
	// TokenViolation adds a BadRequest field violation on message.token,
	// as FCM does for malformed registration tokens.
	TokenViolation bool
}

// Request is one send as the server saw it.
type Request struct {
	At      time.Time
	Token   string
	Header  http.Header
	Body    []byte
	Message map[string]any // the "message" object of the body
	// Status is what the server answered.
	Status int
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
	opts Options

	*fakeprovider.Recorder[Request, Reply]

	mu        sync.Mutex
	accounts  map[string]*rsa.PublicKey // client_email → key, for token assertions
	issued    map[string]time.Time      // access token → expiry
	tokenReqs int
}

// New starts a fake on a loopback port; Close it when done. The messaging
// endpoint is s.Endpoint() (pass it to option.WithEndpoint) and the token
// endpoint s.TokenURL() (the token_uri of the service account).
func New(opts Options) *Server {
	s := &Server{
		opts:     opts,
		Recorder: fakeprovider.New(Reply{Status: http.StatusOK}, opts.Delay, func(r Request) string { return r.Token }),
		accounts: map[string]*rsa.PublicKey{}, issued: map[string]time.Time{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("/v1/", s.send)
	s.Server = httptest.NewServer(mux)
	return s
}

// Endpoint is the base URL of the FCM v1 API on this server.
func (s *Server) Endpoint() string { return s.URL + "/v1" }

// TokenURL is the OAuth2 token endpoint on this server.
func (s *Server) TokenURL() string { return s.URL + "/token" }

// TrustServiceAccount makes the token endpoint accept assertions signed by
// key for email (WriteServiceAccount does it for the account it writes).
// Assertions of any other account are refused.
func (s *Server) TrustServiceAccount(email string, key *rsa.PublicKey) {
	s.mu.Lock()
	s.accounts[email] = key
	s.mu.Unlock()
}

// TokenRequests is how many access tokens were issued.
func (s *Server) TokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenReqs
}

// DefaultReply is the answer the server gives for a scripted status.
func DefaultReply(status int) Reply {
	switch status {
	case 400:
		return Reply{Status: 400, ErrorStatus: "INVALID_ARGUMENT", ErrorCode: "INVALID_ARGUMENT",
			Message: "The registration token is not a valid FCM registration token", TokenViolation: true}
	case 403:
		return Reply{Status: 403, ErrorStatus: "PERMISSION_DENIED", ErrorCode: "SENDER_ID_MISMATCH", Message: "SenderId mismatch"}
	case 404:
		return Reply{Status: 404, ErrorStatus: "NOT_FOUND", ErrorCode: "UNREGISTERED", Message: "Requested entity was not found."}
	case 429:
		return Reply{Status: 429, ErrorStatus: "RESOURCE_EXHAUSTED", ErrorCode: "QUOTA_EXCEEDED", Message: "Quota exceeded for quota metric 'Send messages'."}
	case 500:
		return Reply{Status: 500, ErrorStatus: "INTERNAL", ErrorCode: "INTERNAL", Message: "Internal error encountered."}
	case 503:
		return Reply{Status: 503, ErrorStatus: "UNAVAILABLE", ErrorCode: "UNAVAILABLE", Message: "The service is currently unavailable."}
	}
	return Reply{Status: status}
}

// Script queues answers for a registration token: each send to it takes
// the next (DefaultReply of the status); once used up the token gets 200.
func (s *Server) Script(token string, statuses ...int) {
	replies := make([]Reply, len(statuses))
	for i, st := range statuses {
		replies[i] = DefaultReply(st)
	}
	s.ScriptReplies(token, replies...)
}

// MarkDead makes every later send to token fail with errorCode:
// "UNREGISTERED" (404), "INVALID_ARGUMENT" (400, invalid token) or
// "SENDER_ID_MISMATCH" (403).
func (s *Server) MarkDead(token, errorCode string) {
	var r Reply
	switch errorCode {
	case "INVALID_ARGUMENT":
		r = DefaultReply(400)
	case "SENDER_ID_MISMATCH":
		r = DefaultReply(403)
	default:
		r = DefaultReply(404)
	}
	s.Stick(token, r)
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, "invalid_request", err.Error())
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthError(w, "unsupported_grant_type", gt)
		return
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(r.PostForm.Get("assertion"), claims, func(t *jwt.Token) (any, error) {
		iss, _ := claims["iss"].(string)
		s.mu.Lock()
		key, ok := s.accounts[iss]
		s.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("unknown service account %q", iss)
		}
		return key, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(s.TokenURL()), jwt.WithExpirationRequired())
	if err != nil {
		oauthError(w, "invalid_grant", err.Error())
		return
	}
	if scope, _ := claims["scope"].(string); !strings.Contains(scope, "https://www.googleapis.com/auth/firebase.messaging") &&
		!strings.Contains(scope, "https://www.googleapis.com/auth/cloud-platform") {
		oauthError(w, "invalid_scope", scope)
		return
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	tok := "ya29.fake-" + hex.EncodeToString(b[:])
	s.mu.Lock()
	s.issued[tok] = time.Now().Add(time.Hour)
	s.tokenReqs++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
}

func oauthError(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

var (
	sendPath = regexp.MustCompile(`^/v1/projects/([^/]+)/messages:send$`)
	ttlRe    = regexp.MustCompile(`^\d+(\.\d{1,9})?s$`)
)

func (s *Server) send(w http.ResponseWriter, r *http.Request) {
	defer s.Enter()()
	at := time.Now()
	if r.Method != http.MethodPost {
		googleError(w, Reply{Status: 405, ErrorStatus: "METHOD_NOT_ALLOWED", Message: "method not allowed"})
		return
	}
	pm := sendPath.FindStringSubmatch(r.URL.Path)
	if pm == nil || (s.opts.Project != "" && pm[1] != s.opts.Project) {
		googleError(w, Reply{Status: 404, ErrorStatus: "NOT_FOUND", Message: "Requested entity was not found."})
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	var env struct {
		Message map[string]any `json:"message"`
	}
	_ = json.Unmarshal(body, &env)
	token, _ := env.Message["token"].(string)
	req := Request{At: at, Token: token, Header: r.Header.Clone(), Body: body, Message: env.Message}

	reply := s.check(r, env.Message)
	if reply.Status == 0 {
		reply = s.Next(token)
	}
	req.Status = reply.Status
	if !s.Record(r.Context(), req) {
		return
	}
	if reply.Status != http.StatusOK {
		googleError(w, reply)
		return
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"name": "projects/" + pm[1] + "/messages/0:" + hex.EncodeToString(id[:])})
}

// check authenticates and validates a send; a zero Reply means it passed.
func (s *Server) check(r *http.Request, msg map[string]any) Reply {
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	s.mu.Lock()
	exp, known := s.issued[tok]
	s.mu.Unlock()
	if !ok || !known || time.Now().After(exp) {
		return Reply{Status: 401, ErrorStatus: "UNAUTHENTICATED",
			Message: "Request had invalid authentication credentials. Expected OAuth 2 access token."}
	}
	invalid := func(m string) Reply {
		return Reply{Status: 400, ErrorStatus: "INVALID_ARGUMENT", ErrorCode: "INVALID_ARGUMENT", Message: m}
	}
	if msg == nil {
		return invalid("Invalid JSON payload received.")
	}
	if t, _ := msg["token"].(string); t == "" {
		return invalid("Exactly one of token, topic or condition must be specified.")
	}
	if data, ok := msg["data"]; ok {
		dm, ok := data.(map[string]any)
		if !ok {
			return invalid("Invalid value at 'message.data'")
		}
		for k, v := range dm {
			if _, ok := v.(string); !ok {
				return invalid("Invalid value at 'message.data[" + k + "]', expected a string")
			}
		}
	}
	if a, ok := msg["android"].(map[string]any); ok {
		if p, ok := a["priority"]; ok && p != "high" && p != "normal" && p != "HIGH" && p != "NORMAL" {
			return invalid("Invalid value at 'message.android.priority'")
		}
		if ttl, ok := a["ttl"]; ok {
			if ts, _ := ttl.(string); !ttlRe.MatchString(ts) {
				return invalid("Invalid value at 'message.android.ttl'")
			}
		}
		if ck, _ := a["collapse_key"].(string); len(ck) > 256 {
			return invalid("Invalid value at 'message.android.collapse_key'")
		}
	}
	return Reply{}
}

func googleError(w http.ResponseWriter, r Reply) {
	details := []map[string]any{}
	if r.ErrorCode != "" {
		details = append(details, map[string]any{
			"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": r.ErrorCode,
		})
	}
	if r.TokenViolation {
		details = append(details, map[string]any{
			"@type":           "type.googleapis.com/google.rpc.BadRequest",
			"fieldViolations": []map[string]string{{"field": "message.token", "description": r.Message}},
		})
	}
	e := map[string]any{"code": r.Status, "message": r.Message, "status": r.ErrorStatus}
	if len(details) > 0 {
		e["details"] = details
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(r.Status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": e})
}
