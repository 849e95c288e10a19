package device

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"log"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/onepush/onepush/policy"
)

// Event is one decision the simulator sent, for the page and for tests.
type Event struct {
	At       time.Time
	ID       string
	User     string
	Kind     string
	Decision string
	Source   string // "auto" or "web"
	Status   int    // HTTP status of the decision post; 0 on transport error
	Err      string
}

// Simulator is the phone's screen: an http.Handler serving
//
//	GET  /        the page listing pending prompts with Approve/Deny buttons
//	POST /push    the webhook the server pushes {"challenge_id","kind"} to
//	POST /decide  the page's form post (id, decision, number, code, csrf)
//	POST /respond the offline transaction response (challenge, payee,
//	              amount, csrf): the page again, showing the 8 digits
//
// and Run polls GET /challenges as a fallback for lost pushes. With auto
// "approve", "deny" or "fraud" it decides every new challenge by itself
// (except number-matching ones, and approvals of code-transfer ones, which
// need the number or code from the browser and are left on the page);
// "off" or "" leaves all decisions to the page.
type Simulator struct {
	// PollInterval is how often Run polls (default 2s). Set before Run.
	PollInterval time.Duration

	p    *Phone
	auto string
	log  *log.Logger
	csrf string

	mu       sync.Mutex
	pending  map[string]*Challenge
	handled  map[string]bool // auto-decided (or in flight): never decide twice
	history  []Event
	stopped  []Notice // prompts the server stopped, newest last (maxNotices kept)
	pollErr  string
	runCtx   context.Context
	inflight sync.WaitGroup
	notices  []Notice // pushes naming no challenge ("test", "replaced"), newest last
}

// Notices returns the notices received, oldest first (last 10 kept).
func (s *Simulator) Notices() []Notice {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Notice(nil), s.notices...)
}

// NewSimulator returns a simulator for the registered phone p. auto is
// "approve", "deny", "fraud" or "off"/"" (anything else is treated as off
// and logged). logger may be nil.
func NewSimulator(p *Phone, auto string, logger *log.Logger) *Simulator {
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	auto = strings.ToLower(strings.TrimSpace(auto))
	switch auto {
	case Approve, Deny, Fraud:
	case "", "off":
		auto = ""
	default:
		logger.Printf("phone: unknown auto mode %q, treating as off", auto)
		auto = ""
	}
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("phone: crypto/rand: " + err.Error())
	}
	return &Simulator{
		PollInterval: 2 * time.Second,
		p:            p,
		auto:         auto,
		log:          logger,
		csrf:         base64.RawURLEncoding.EncodeToString(b[:]),
		pending:      map[string]*Challenge{},
		handled:      map[string]bool{},
		runCtx:       context.Background(),
	}
}

// Phone returns the simulated phone.
func (s *Simulator) Phone() *Phone { return s.p }

// History returns the decisions sent so far, oldest first (last 50 kept).
func (s *Simulator) History() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.history...)
}

// Notice is what the app tells its user beside the prompts: a prompt the
// server stopped without a decision, with the reason in words
// (StopMessage), or a push that names no challenge ("test" after this
// phone was registered, "replaced" when another phone took its place;
// Kind and At only).
type Notice struct {
	At      time.Time
	ID      string
	User    string
	Kind    string
	Reason  string
	Message string
}

// maxNotices bounds the stopped prompts the page keeps.
const maxNotices = 10

// Stopped returns the prompts the server stopped and said why, oldest
// first (the last maxNotices).
func (s *Simulator) Stopped() []Notice {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Notice(nil), s.stopped...)
}

// learnStopped asks the server about a prompt that vanished from its list
// or that a push of kind "stopped" named: one stopped without a decision
// with a reason becomes a notice in words.
func (s *Simulator) learnStopped(ctx context.Context, id string) {
	gctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	ch, err := s.p.Get(gctx, id)
	if err != nil {
		s.log.Printf("phone: fetch %s to learn why it ended: %v", id, err)
		return
	}
	msg := StopMessage(ch.Reason)
	if msg == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, id)
	for _, n := range s.stopped {
		if n.ID == id {
			return
		}
	}
	s.stopped = append(s.stopped, Notice{At: time.Now(), ID: id, User: ch.Parsed.User, Kind: ch.Kind, Reason: ch.Reason, Message: msg})
	if len(s.stopped) > maxNotices {
		s.stopped = s.stopped[len(s.stopped)-maxNotices:]
	}
	s.log.Printf("phone: prompt %s stopped: %s", id, ch.Reason)
}

// PendingPrompts returns the prompts currently shown on the page, the
// soonest to expire first.
func (s *Simulator) PendingPrompts() []Challenge {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pendingLocked()
}

func (s *Simulator) pendingLocked() []Challenge {
	out := make([]Challenge, 0, len(s.pending))
	for _, ch := range s.pending {
		out = append(out, *ch)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].ExpiresAt.Equal(out[j].ExpiresAt) {
			return out[i].ExpiresAt.Before(out[j].ExpiresAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Run polls GET /challenges every PollInterval until ctx ends, then waits
// for decisions in flight and returns ctx.Err(). Pushes received while Run
// is active are handled under ctx.
func (s *Simulator) Run(ctx context.Context) error {
	interval := s.PollInterval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	s.mu.Lock()
	s.runCtx = ctx
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.runCtx = context.Background()
		s.mu.Unlock()
		s.inflight.Wait()
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.poll(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (s *Simulator) poll(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	list, err := s.p.Pending(pctx)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		changed := s.pollErr != err.Error()
		s.pollErr = err.Error()
		s.mu.Unlock()
		if changed {
			s.log.Printf("phone: poll failed: %v", err)
		}
		return
	}
	seen := make(map[string]bool, len(list))
	for i := range list {
		seen[list[i].ID] = true
	}
	s.mu.Lock()
	if s.pollErr != "" {
		s.log.Printf("phone: poll works again")
		s.pollErr = ""
	}
	// The server is the source of truth: drop prompts it no longer lists
	// (decided elsewhere, expired, cancelled or stopped), and ask why of
	// those nobody decided here.
	var vanished []string
	for id := range s.pending {
		if !seen[id] {
			delete(s.pending, id)
			if !s.handled[id] && len(vanished) < maxNotices {
				vanished = append(vanished, id)
			}
		}
	}
	s.mu.Unlock()
	for _, id := range vanished {
		s.learnStopped(ctx, id)
	}
	for i := range list {
		ch := list[i]
		s.consider(ctx, &ch, "poll")
	}
}

// consider shows ch on the page and, in auto mode, decides it.
func (s *Simulator) consider(ctx context.Context, ch *Challenge, via string) {
	s.mu.Lock()
	if s.handled[ch.ID] {
		s.mu.Unlock()
		return
	}
	if !ch.ExpiresAt.IsZero() && !ch.ExpiresAt.After(time.Now()) {
		delete(s.pending, ch.ID)
		s.mu.Unlock()
		return
	}
	_, known := s.pending[ch.ID]
	s.pending[ch.ID] = ch
	// A code-transfer approval needs the code from the browser: only a
	// person can carry it over. Denying needs none.
	needsCode := ch.Parsed.CodeDigits > 0 && s.auto == Approve
	autoDecide := s.auto != "" && !ch.Parsed.NumberMatch && !needsCode && ch.ParseErr == nil
	if autoDecide {
		s.handled[ch.ID] = true
	}
	auto := s.auto
	s.mu.Unlock()

	if !known {
		s.log.Printf("phone: prompt %s (%s) for %q via %s", ch.ID, ch.Kind, ch.Parsed.User, via)
		if s.auto != "" && !autoDecide {
			s.log.Printf("phone: prompt %s needs a human (number matching, a code from the browser or unreadable context): open the page", ch.ID)
		}
	}
	if autoDecide {
		s.decide(ctx, ch, auto, 0, "", "auto")
	}
}

// decide posts the decision, with the code typed from the browser for a
// code-transfer challenge, and records the outcome.
func (s *Simulator) decide(ctx context.Context, ch *Challenge, decision string, number int, code, source string) Event {
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var status int
	var err error
	if decision == Approve && ch.Parsed.Batch != nil && ch.Rows == nil {
		// A batch is approved only with its rows fetched and checked; a
		// mismatch leaves ch.Rows nil and the approval is refused below.
		if _, rerr := s.p.Rows(dctx, ch); rerr != nil {
			s.log.Printf("phone: prompt %s: rows refused: %v", ch.ID, rerr)
		}
	}
	if ch.Parsed.CodeDigits > 0 || code != "" {
		status, err = s.p.DecideWithCode(dctx, ch, decision, code)
	} else {
		status, err = s.p.Decide(dctx, ch, decision, number)
	}
	ev := Event{At: time.Now(), ID: ch.ID, User: ch.Parsed.User, Kind: ch.Kind,
		Decision: decision, Source: source, Status: status}
	s.mu.Lock()
	if err != nil {
		ev.Err = err.Error()
		// Nothing reached the server: let a later poll or click retry.
		delete(s.handled, ch.ID)
	} else {
		delete(s.pending, ch.ID)
	}
	s.history = append(s.history, ev)
	if len(s.history) > 50 {
		s.history = s.history[len(s.history)-50:]
	}
	s.mu.Unlock()
	if err != nil {
		s.log.Printf("phone: %s %s (%s): %v", decision, ch.ID, source, err)
	} else {
		s.log.Printf("phone: %s %s (%s): HTTP %d", decision, ch.ID, source, status)
	}
	return ev
}

// ServeHTTP serves /, /push, /decide and /respond.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		s.servePage(w, r, nil)
	case "/push", "/decide", "/respond":
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		switch r.URL.Path {
		case "/push":
			s.servePush(w, r)
		case "/decide":
			s.serveDecide(w, r)
		default:
			s.serveRespond(w, r)
		}
	default:
		http.NotFound(w, r)
	}
}

func (s *Simulator) servePush(w http.ResponseWriter, r *http.Request) {
	var msg struct {
		ChallengeID string `json:"challenge_id"`
		Kind        string `json:"kind"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&msg); err != nil || msg.ChallengeID == "" {
		http.Error(w, `{"error":"want {\"challenge_id\":...}"}`, http.StatusBadRequest)
		return
	}
	if strings.HasPrefix(msg.ChallengeID, "test-") || strings.HasPrefix(msg.ChallengeID, "notice-") {
		// A notice names no challenge: "test" after a binding, "replaced"
		// when another phone took this one's place for a user.
		s.log.Printf("phone: notice %q (%s)", msg.Kind, msg.ChallengeID)
		s.mu.Lock()
		s.notices = append(s.notices, Notice{At: time.Now(), Kind: msg.Kind})
		if len(s.notices) > 10 {
			s.notices = s.notices[len(s.notices)-10:]
		}
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.mu.Lock()
	ctx := s.runCtx
	s.inflight.Add(1)
	s.mu.Unlock()
	s.log.Printf("phone: push for %s (%s)", msg.ChallengeID, msg.Kind)
	// Answer the pusher at once; fetch the details over the device API.
	go func() {
		defer s.inflight.Done()
		if msg.Kind == StoppedKind {
			s.learnStopped(ctx, msg.ChallengeID)
			return
		}
		gctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		ch, err := s.p.Get(gctx, msg.ChallengeID)
		if err != nil {
			s.log.Printf("phone: fetch %s after push: %v", msg.ChallengeID, err)
			return
		}
		s.consider(ctx, ch, "push")
	}()
	w.WriteHeader(http.StatusNoContent)
}

// form reads the page's form post and checks its CSRF token; false when
// it has answered the request with an error.
func (s *Simulator) form(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return false
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(s.csrf)) != 1 {
		http.Error(w, "stale or forged form; reload the page", http.StatusForbidden)
		return false
	}
	return true
}

func (s *Simulator) serveDecide(w http.ResponseWriter, r *http.Request) {
	if !s.form(w, r) {
		return
	}
	id := r.PostForm.Get("id")
	decision := r.PostForm.Get("decision")
	switch decision {
	case Approve, Deny, Fraud:
	default:
		http.Error(w, "bad decision", http.StatusBadRequest)
		return
	}
	if id == "" {
		http.Error(w, "missing id", http.StatusBadRequest)
		return
	}
	number := 0
	if n := strings.TrimSpace(r.PostForm.Get("number")); n != "" {
		v, err := strconv.Atoi(n)
		if err != nil {
			http.Error(w, "number must be digits", http.StatusBadRequest)
			return
		}
		number = v
	}
	s.mu.Lock()
	ch := s.pending[id]
	s.mu.Unlock()
	if ch == nil {
		var err error
		if ch, err = s.p.Get(r.Context(), id); err != nil {
			s.log.Printf("phone: fetch %s for web decision: %v", id, err)
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
	}
	s.decide(r.Context(), ch, decision, number, r.PostForm.Get("code"), "web")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// serveRespond computes the offline transaction response from what the
// user typed from the waiting page and shows the page with it. Nothing
// reaches the server: a phone without network answers the same.
func (s *Simulator) serveRespond(w http.ResponseWriter, r *http.Request) {
	if !s.form(w, r) {
		return
	}
	res := &respondView{Challenge: r.PostForm.Get("challenge"), Payee: r.PostForm.Get("payee"), Amount: r.PostForm.Get("amount")}
	if resp, err := s.p.Respond(res.Challenge, res.Payee, res.Amount); err != nil {
		res.Err = err.Error()
	} else {
		res.Response = resp
	}
	s.servePage(w, r, res)
}

type promptView struct {
	Lang        string
	ID          string
	Kind        string
	Info        ContextInfo
	Raw         string // shown when the context could not be parsed
	ExpiresIn   string
	NumberMatch bool
	CodeDigits  int
}

// respondView is the offline response form as typed, and its answer.
type respondView struct {
	Challenge, Payee, Amount string
	Response, Err            string
}

type pageData struct {
	// Lang is the phone's language (the viewer's Accept-Language: ja or
	// en): prompts show the bank's labels and amounts in it.
	Lang         string
	CredentialID string
	Code         string
	CodeValid    int
	CodeErr      string
	Auto         string
	Prompts      []promptView
	Stopped      []Notice
	History      []Event
	PollErr      string
	CSRF         string
	Refresh      bool
	Respond      *respondView
	Notices      []Notice // newest first
}

func (s *Simulator) servePage(w http.ResponseWriter, r *http.Request, res *respondView) {
	now := time.Now()
	d := pageData{Lang: phoneLang(r), CredentialID: s.p.CredentialID(), Auto: s.auto, CSRF: s.csrf, Refresh: res == nil, Respond: res}
	if d.Auto == "" {
		d.Auto = "off"
	}
	code, valid, err := s.p.SecurityCodeAt(s.p.now())
	if err != nil {
		d.CodeErr = err.Error()
	} else {
		d.Code, d.CodeValid = code, int(valid/time.Second)
	}
	s.mu.Lock()
	list := s.pendingLocked()
	d.PollErr = s.pollErr
	for i := len(s.stopped) - 1; i >= 0; i-- {
		d.Stopped = append(d.Stopped, s.stopped[i])
	}
	for i := len(s.notices) - 1; i >= 0; i-- {
		d.Notices = append(d.Notices, s.notices[i])
	}
	for i := len(s.history) - 1; i >= 0 && len(d.History) < 10; i-- {
		d.History = append(d.History, s.history[i])
	}
	s.mu.Unlock()
	for _, ch := range list {
		v := promptView{Lang: d.Lang, ID: ch.ID, Kind: ch.Kind, Info: ch.Parsed, NumberMatch: ch.Parsed.NumberMatch, CodeDigits: ch.Parsed.CodeDigits}
		if ch.ParseErr != nil {
			v.Raw = ch.Context
		}
		if !ch.ExpiresAt.IsZero() {
			left := ch.ExpiresAt.Sub(now).Round(time.Second)
			if left < 0 {
				left = 0
			}
			v.ExpiresIn = left.String()
		}
		if v.NumberMatch || v.CodeDigits > 0 {
			// Do not reload under someone typing the number or code.
			d.Refresh = false
		}
		d.Prompts = append(d.Prompts, v)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	if err := pageTmpl.Execute(w, d); err != nil {
		s.log.Printf("phone: render page: %v", err)
	}
}

// visible writes control, format (bidi overrides included) and separator
// characters as \u escapes: a phone must never let a value it shows
// reorder or break the lines around it, whatever the server checked.
func visible(s string) string {
	var b strings.Builder
	for _, c := range s {
		if unicode.In(c, unicode.C, unicode.Zl, unicode.Zp) {
			fmt.Fprintf(&b, "\\u%04X", c)
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// amount groups the raw digits of an amount by thousands (1,500,000); the
// raw value is what was signed, this is only how it is shown.
func amount(raw string) string {
	for i := 0; i < len(raw); i++ {
		if raw[i] < '0' || raw[i] > '9' {
			return visible(raw)
		}
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if i > 0 && (len(raw)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteByte(raw[i])
	}
	return b.String()
}

// phoneWords are the simulator's own labels of a prompt in Japanese.
var phoneWords = map[string]string{"Service": "サービス", "Amount": "金額", "Payee": "振込先", "Payee name": "受取人名"}

// word is the simulator's label en in lang.
func word(lang, en string) string {
	if ja, ok := phoneWords[en]; ok && lang == "ja" {
		return ja
	}
	return en
}

// phoneLang is the language the viewer asks for (Accept-Language): the
// phone's language, ja or en.
func phoneLang(r *http.Request) string { return policy.Language(r.Header.Get("Accept-Language")) }

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{"visible": visible, "amount": amount, "word": word}).Parse(`<!doctype html>
<html lang="{{.Lang}}"><head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{{if .Refresh}}<meta http-equiv="refresh" content="3">{{end}}
<title>onepush phone</title>
<style>
body{font-family:system-ui,-apple-system,sans-serif;margin:0 auto;max-width:28rem;padding:1rem;background:#f4f5f7;color:#1b1f24}
h1{font-size:1.2rem;margin:.2rem 0 1rem}
.card{background:#fff;border-radius:.8rem;padding:1rem;margin-bottom:1rem;box-shadow:0 1px 3px rgba(0,0,0,.12)}
.code{font-size:2.2rem;letter-spacing:.3rem;font-family:ui-monospace,monospace;text-align:center;margin:.3rem 0}
.muted{color:#5f6b7a;font-size:.85rem}
dl{display:grid;grid-template-columns:auto 1fr;gap:.3rem .8rem;margin:.6rem 0}
dt{color:#5f6b7a}dd{margin:0;word-break:break-word}
.kind{display:inline-block;background:#e8eefc;color:#1d4ed8;border-radius:.4rem;padding:.1rem .5rem;font-size:.85rem}
form{margin:0}
.btns{display:flex;gap:.5rem;margin-top:.8rem}
button{flex:1;font-size:1.05rem;padding:.8rem;border:0;border-radius:.6rem;cursor:pointer}
.approve{background:#15803d;color:#fff}.deny{background:#d1d5db;color:#111}
.fraud{background:none;color:#b91c1c;text-decoration:underline;font-size:.85rem;padding:.4rem;flex:none;width:100%}
input[type=text]{width:100%;box-sizing:border-box;font-size:1.4rem;padding:.5rem;text-align:center;border:1px solid #9ca3af;border-radius:.5rem}
.err{color:#b91c1c}
#respond label{display:block;margin-top:.6rem}
pre{white-space:pre-wrap;word-break:break-all;font-size:.8rem}
table{width:100%;font-size:.8rem;border-collapse:collapse}td{padding:.2rem .3rem;border-top:1px solid #e5e7eb}
</style></head><body>
<h1>onepush phone</h1>
<div class="card">
 <div class="muted">Security code</div>
 {{if .CodeErr}}<div class="err">{{.CodeErr}}</div>{{else}}<div class="code" id="code">{{.Code}}</div>
 <div class="muted">valid {{.CodeValid}} s more</div>{{end}}
 <div class="muted">App ID <code id="app-id">{{.CredentialID}}</code> &middot; auto: {{.Auto}}</div>
 {{if .PollErr}}<div class="err">Server: {{.PollErr}}</div>{{end}}
</div>
{{if .Notices}}<div class="card" id="notices"><div class="muted">Notifications</div>
{{range .Notices}}<div class="notice">{{.At.Format "15:04:05"}} {{if eq .Kind "test"}}Test notification: this phone is registered and receives requests.{{else if eq .Kind "replaced"}}Another phone was registered in this one's place: this phone no longer receives requests.{{else}}{{.Kind}}{{end}}</div>{{end}}
</div>{{end}}
{{range .Prompts}}
<div class="card prompt" id="prompt-{{.ID}}">
 <span class="kind">{{.Kind}}</span>{{if .ExpiresIn}} <span class="muted">expires in {{.ExpiresIn}}</span>{{end}}
 <dl>
  {{if .Info.Service}}<dt>{{word $.Lang "Service"}}</dt><dd class="service">{{visible .Info.Service}}</dd>{{end}}
  {{if .Info.User}}<dt>User</dt><dd>{{visible .Info.User}}</dd>{{end}}
  {{if .Info.Kind}}<dt>Kind</dt><dd>{{.Info.Kind}}{{if and .Info.Rule (ne .Info.Rule .Info.Kind)}} ({{.Info.Rule}}){{end}}</dd>{{end}}
  {{$lang := .Lang}}{{with .Info.Transaction}}<dt>{{word $lang "Amount"}}</dt><dd class="amount">{{with index .AmountShown $lang}}{{visible .}}{{else}}{{amount .Amount}} {{visible .Currency}}{{end}}</dd>
  <dt>{{word $lang "Payee"}}</dt><dd class="payee">{{visible .Payee}}</dd>
  {{if .PayeeName}}<dt>{{word $lang "Payee name"}}</dt><dd>{{visible .PayeeName}}</dd>{{end}}{{end}}
  {{range .Info.Display}}<dt class="label">{{visible (.LabelIn $lang)}}</dt><dd>{{visible .Value}}</dd>{{end}}
  {{if .Info.Host}}<dt>Site</dt><dd class="host">{{visible .Info.Host}}</dd>{{end}}
  {{if .Info.ClientIP}}<dt>From IP</dt><dd>{{visible .Info.ClientIP}}</dd>{{end}}
  {{if .Info.UserAgent}}<dt>Browser</dt><dd class="muted">{{visible .Info.UserAgent}}</dd>{{end}}
 </dl>
 {{if .Raw}}<div class="err">Unreadable context:</div><pre>{{.Raw}}</pre>{{end}}
 <form method="post" action="/decide">
  <input type="hidden" name="csrf" value="{{$.CSRF}}">
  <input type="hidden" name="id" value="{{.ID}}">
  {{if .NumberMatch}}<label class="muted" for="n-{{.ID}}">Number shown in the browser</label>
  <input type="text" id="n-{{.ID}}" name="number" inputmode="numeric" pattern="[0-9]*" autocomplete="off" required>{{end}}
  {{if .CodeDigits}}<label class="muted" for="c-{{.ID}}">Type the {{.CodeDigits}}-digit code shown in the browser</label>
  <input type="text" id="c-{{.ID}}" name="code" class="code-input" inputmode="numeric" pattern="[0-9]{ {{- .CodeDigits -}} }" maxlength="{{.CodeDigits}}" autocomplete="off" required>{{end}}
  <div class="btns">
   <button class="approve" name="decision" value="approve">Approve</button>
   <button class="deny" name="decision" value="deny" formnovalidate>Deny</button>
  </div>
  <div class="btns"><button class="fraud" name="decision" value="fraud" formnovalidate>This was not me &mdash; report fraud</button></div>
 </form>
</div>
{{else}}
<div class="card muted">No pending prompts.</div>
{{end}}
{{range .Stopped}}
<div class="card stopped" id="stopped-{{.ID}}">
 <span class="kind">{{.Kind}}</span> <span class="muted">stopped {{.At.Format "15:04:05"}}</span>
 {{if .User}}<div class="muted">User {{visible .User}}</div>{{end}}
 <p class="err reason">{{.Message}}</p>
 <form method="post" action="/decide">
  <input type="hidden" name="csrf" value="{{$.CSRF}}">
  <input type="hidden" name="id" value="{{.ID}}">
  <div class="btns"><button class="fraud" name="decision" value="fraud">This was not me &mdash; report fraud</button></div>
 </form>
</div>
{{end}}
<div class="card" id="respond">
 <div class="muted">No push? Answer a transfer's challenge offline: type what the browser's page shows.</div>
 <form method="post" action="/respond">
  <input type="hidden" name="csrf" value="{{$.CSRF}}">
  <label class="muted" for="r-challenge">Challenge number</label>
  <input type="text" id="r-challenge" name="challenge" inputmode="numeric" autocomplete="off" required{{with .Respond}} value="{{.Challenge}}"{{end}}>
  <label class="muted" for="r-payee">Payee account</label>
  <input type="text" id="r-payee" name="payee" autocomplete="off" required{{with .Respond}} value="{{.Payee}}"{{end}}>
  <label class="muted" for="r-amount">Amount (1,500,000 or 1,500,000 USD)</label>
  <input type="text" id="r-amount" name="amount" autocomplete="off" required{{with .Respond}} value="{{.Amount}}"{{end}}>
  <div class="btns"><button class="approve">Show the response</button></div>
 </form>
 {{with .Respond}}{{if .Err}}<div class="err" id="respond-err">{{.Err}}</div>{{else}}<div class="muted">Type this into the browser:</div>
 <div class="code" id="response">{{.Response}}</div>{{end}}{{end}}
</div>
{{if .History}}
<div class="card"><div class="muted">Recent decisions</div>
<table>{{range .History}}<tr><td>{{.At.Format "15:04:05"}}</td><td>{{.Decision}}</td><td>{{.User}}</td><td>{{.Source}}</td><td>{{if .Err}}<span class="err">{{.Err}}</span>{{else}}HTTP {{.Status}}{{end}}</td></tr>{{end}}</table>
</div>
{{end}}
</body></html>
`))
