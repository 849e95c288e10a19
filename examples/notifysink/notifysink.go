// Package notifysink is a bank's notification system in miniature: the
// receiving end of onepush's notify webhook. It verifies every message's
// signature (notify.Verify), keeps each message once however
// often it is delivered (by its id), and shows on a page what each customer
// was sent. The demo runs it as its "outbox" page; the end-to-end tests use
// it as the real HTTP sink, and can make it fail the next deliveries.
package notifysink

import (
	"cmp"
	"context"
	"encoding/json"
	"html/template"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/onepush/onepush/pushauth/notify"
)

// maxMessages bounds what the sink keeps; older messages are dropped.
const maxMessages = 10000

// Message is one notification as the customer's bank received it.
type Message struct {
	ID          string    `json:"id"`
	Type        string    `json:"type"`
	Time        time.Time `json:"time"`
	User        string    `json:"user"`
	Credential  string    `json:"credential_id,omitempty"`
	Previous    string    `json:"previous_credential_id,omitempty"`
	Via         string    `json:"via,omitempty"`
	ClientIP    string    `json:"client_ip,omitempty"`
	Actor       string    `json:"actor,omitempty"`
	Detail      string    `json:"detail,omitempty"`
	Repudiation string    `json:"repudiation"`
	// Deliveries counts how often it arrived (at-least-once delivery).
	Deliveries int `json:"deliveries"`
}

// Sink is an http.Handler: POST / receives a notification, GET / shows the
// page, GET /messages.json lists the messages.
type Sink struct {
	secret string
	now    func() time.Time

	mu       sync.Mutex
	msgs     []*Message
	byID     map[string]*Message
	failNext int
	attempts int
	rejected int
	changed  chan struct{} // closed and replaced on every change
}

// New returns a sink that accepts messages signed with secret.
func New(secret string) *Sink {
	return &Sink{secret: secret, now: time.Now, byID: map[string]*Message{}, changed: make(chan struct{})}
}

// FailNext makes the next n deliveries (correctly signed ones) fail with
// 503, as a notification system that is down would.
func (s *Sink) FailNext(n int) {
	s.mu.Lock()
	s.failNext = n
	s.mu.Unlock()
}

// Attempts counts every POST; Rejected those with a bad signature.
func (s *Sink) Attempts() (all, rejected int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts, s.rejected
}

// Messages returns the messages kept, in order of first arrival.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.msgs))
	for i, m := range s.msgs {
		out[i] = *m
	}
	return out
}

// Wait returns the first message that match accepts, waiting for it until
// ctx ends.
func (s *Sink) Wait(ctx context.Context, match func(Message) bool) (Message, error) {
	for {
		s.mu.Lock()
		changed := s.changed
		for _, m := range s.msgs {
			if match(*m) {
				s.mu.Unlock()
				return *m, nil
			}
		}
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return Message{}, ctx.Err()
		}
	}
}

func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/":
		s.receive(w, r)
	case r.Method == http.MethodGet && r.URL.Path == "/messages.json":
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"messages": s.Messages()})
	case r.Method == http.MethodGet && r.URL.Path == "/":
		s.page(w)
	default:
		http.NotFound(w, r)
	}
}

func (s *Sink) receive(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		http.Error(w, "reading the body", http.StatusBadRequest)
		return
	}
	id, verr := notify.Verify(s.secret, r.Header, body, s.now())
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	defer s.notify()
	if verr != nil {
		s.rejected++
		http.Error(w, verr.Error(), http.StatusUnauthorized)
		return
	}
	if s.failNext > 0 {
		s.failNext--
		http.Error(w, "notification system unavailable", http.StatusServiceUnavailable)
		return
	}
	if m, dup := s.byID[id]; dup {
		m.Deliveries++
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var m Message
	if err := json.Unmarshal(body, &m); err != nil || m.ID != id {
		http.Error(w, "body is not the signed message", http.StatusBadRequest)
		return
	}
	m.Deliveries = 1
	s.msgs = append(s.msgs, &m)
	s.byID[id] = &m
	if len(s.msgs) > maxMessages {
		delete(s.byID, s.msgs[0].ID)
		s.msgs = s.msgs[1:]
	}
	w.WriteHeader(http.StatusNoContent)
}

// notify wakes Wait; s.mu must be held.
func (s *Sink) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

var pageTmpl = template.Must(template.New("outbox").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5"><title>What each customer was sent</title>
<style>body{font-family:system-ui,sans-serif;margin:1.5rem;background:#f6f7f9;color:#1b1f24}section{background:#fff;border-radius:.5rem;padding:1rem 1.25rem;margin:1rem 0;box-shadow:0 1px 3px rgba(0,0,0,.12)}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem .5rem;border-top:1px solid #eee;vertical-align:top}.muted{color:#666;font-size:.9rem}code{font-size:.85rem}</style></head>
<body><h1>Outbox: what each customer was sent</h1>
<p class="muted">The bank's notification system (e-mail, SMS or letter) receives these from onepush, each signed and verified. {{.Attempts}} deliveries received, {{.Rejected}} with a bad signature refused; this page refreshes every 5 s.</p>
{{range .Users}}<section><h2>{{.User}}</h2><table><tr><th>time</th><th>event</th><th>what</th><th>the customer is told</th></tr>
{{range .Msgs}}<tr><td>{{.Time.Format "2006-01-02 15:04:05"}}</td><td><code>{{.Type}}</code></td>
<td>{{if .Credential}}phone {{.Credential}}{{end}}{{if .Previous}} (replacing {{.Previous}}){{end}}{{if .Via}}, via {{.Via}}{{end}}{{if .ClientIP}}, from {{.ClientIP}}{{end}}{{if .Detail}}<br><span class="muted">{{.Detail}}</span>{{end}}</td>
<td>{{.Repudiation}}</td></tr>{{end}}</table></section>
{{else}}<p>Nothing sent yet.</p>{{end}}
</body></html>`))

func (s *Sink) page(w http.ResponseWriter) {
	msgs := s.Messages()
	all, rejected := s.Attempts()
	type user struct {
		User string
		Msgs []Message
	}
	var users []*user
	idx := map[string]*user{}
	for _, m := range msgs {
		u, ok := idx[m.User]
		if !ok {
			u = &user{User: m.User}
			idx[m.User] = u
			users = append(users, u)
		}
		u.Msgs = append(u.Msgs, m)
	}
	slices.SortFunc(users, func(a, b *user) int { return cmp.Compare(a.User, b.User) })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_ = pageTmpl.Execute(w, map[string]any{"Users": users, "Attempts": all, "Rejected": rejected})
}
