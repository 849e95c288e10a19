package main

// The peak scenario's processes: the legacy bank with the bench's users and
// its operations log written out, the phones (the webhook every push
// reaches, deciding like people), and the customers' browsers.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
)

// jsonLines appends one JSON object a line to a file, from many goroutines.
type jsonLines struct {
	mu sync.Mutex
	f  *os.File
	w  *bufio.Writer
	e  *json.Encoder
}

func createJSONLines(file string) (*jsonLines, error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriterSize(f, 1<<16)
	return &jsonLines{f: f, w: w, e: json.NewEncoder(w)}, nil
}

func (j *jsonLines) write(v any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	_ = j.e.Encode(v)
}

func (j *jsonLines) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.w.Flush(); err != nil {
		return err
	}
	return j.f.Close()
}

// readJSONLines decodes every line of file into a T.
func readJSONLines[T any](file string) ([]T, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []T
	dec := json.NewDecoder(f)
	for {
		var v T
		if err := dec.Decode(&v); err == io.EOF {
			return out, nil
		} else if err != nil {
			return out, fmt.Errorf("%s: record %d: %w", file, len(out)+1, err)
		}
		out = append(out, v)
	}
}

// peakUser is bench user i at the legacy bank: contract 1, user u<i>.
func peakUser(i int) bank.User {
	s := strconv.Itoa(i)
	return bank.User{ContractNo: "1", UserID: "u" + s, Password: "pw" + s, TxnPassword: "tx" + s, Name: "User " + s}
}

// bankRecord is one line the bank role writes: an entry of the bank's
// operations log, or a gap when entries fell out of the log (it keeps the
// last bank.MaxOps) before they were read, which voids the checks.
type bankRecord struct {
	bank.Op
	Gap string `json:"gap,omitempty"`
}

// roleBank serves the legacy bank (examples/legacybank/bank, unchanged)
// with users u0..u<n-1> and copies its operations log to -out every 50 ms
// until stdin closes.
func roleBank(args []string) error {
	fs := flag.NewFlagSet("bank", flag.ExitOnError)
	n := fs.Int("users", 1000, "users u0..u<n-1>")
	out := fs.String("out", "", "operations log, JSON lines")
	_ = fs.Parse(args)
	users := make([]bank.User, *n)
	for i := range users {
		users[i] = peakUser(i)
	}
	b := bank.New(bank.Config{Users: users, MaxSessions: 4 * *n})
	w, err := createJSONLines(*out)
	if err != nil {
		return err
	}
	ln, err := listenAndAnnounce()
	if err != nil {
		return err
	}
	go func() { _ = (&http.Server{Handler: b, ReadHeaderTimeout: time.Minute}).Serve(ln) }()
	last := 0
	copyNew := func() {
		ops := b.OpsLog()
		for _, op := range ops {
			if op.Seq <= last {
				continue
			}
			if op.Seq != last+1 {
				w.write(bankRecord{Gap: fmt.Sprintf("operations %d to %d fell out of the bank's log before they were read", last+1, op.Seq-1)})
			}
			w.write(bankRecord{Op: op})
			last = op.Seq
		}
	}
	stdin := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stdin) }()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			copyNew()
		case <-stdin:
			copyNew()
			if err := w.close(); err != nil {
				return err
			}
			fmt.Printf("done ops=%d\n", last)
			return nil
		}
	}
}

// phoneRecord is one decision a phone sent (or tried to).
type phoneRecord struct {
	Challenge string `json:"challenge"`
	Ref       string `json:"ref"`
	User      string `json:"user"`
	Kind      string `json:"kind"`
	Decision  string `json:"decision"`
	Phase     string `json:"phase"`
	Push      int64  `json:"push_ns"`  // the push arrived
	Sent      int64  `json:"sent_ns"`  // the decision was posted (last try)
	Think     int64  `json:"think_ns"` // the person's deliberate wait
	Status    int    `json:"status"`   // of the decision post; 0: none obtained
	Tries     int    `json:"tries"`
	Code      bool   `json:"code,omitempty"` // approved with the code the browser showed
	// Accepted: a try was answered 200. Unknown: a try was sent and got
	// no answer or a 5xx, so the gateway may have taken it.
	Accepted bool   `json:"accepted,omitempty"`
	Unknown  bool   `json:"unknown,omitempty"`
	Err      string `json:"err,omitempty"`
}

// displayValue is the value of the display line labelled label.
func displayValue(ch *device.Challenge, label string) string {
	for _, d := range ch.Parsed.Display {
		if d.Label == label {
			return d.Value
		}
	}
	return ""
}

// codeBox carries the codes the customers' browsers show to their phones
// (the person reading one screen and typing into the other).
type codeBox struct {
	mu sync.Mutex
	m  map[string]string // challenge id -> code
}

func (b *codeBox) serve(w http.ResponseWriter, r *http.Request) {
	var msg struct{ Challenge, Code string }
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&msg); err != nil || msg.Challenge == "" {
		http.Error(w, "want {challenge, code}", http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	if len(b.m) < 100_000 {
		b.m[msg.Challenge] = msg.Code
	}
	b.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// wait returns the code for challenge id once it came, or "" after d.
func (b *codeBox) wait(id string, d time.Duration) string {
	deadline := time.Now().Add(min(d, 2*time.Minute))
	for {
		b.mu.Lock()
		code, ok := b.m[id]
		delete(b.m, id)
		b.mu.Unlock()
		if ok || time.Now().After(deadline) {
			return code
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// phoneMix is how the phones' owners answer in the peak phase.
type phoneMix struct {
	thinkMin, thinkMax     time.Duration
	pSilent, pDeny, pFraud float64
}

func (m phoneMix) draw(r *rand.Rand) (decision string, think time.Duration) {
	think = m.thinkMin + time.Duration(r.Int64N(int64(m.thinkMax-m.thinkMin)+1))
	switch x := r.Float64(); {
	case x < m.pSilent:
		return "", think
	case x < m.pSilent+m.pDeny:
		return device.Deny, think
	case x < m.pSilent+m.pDeny+m.pFraud:
		return device.Fraud, think
	}
	return device.Approve, think
}

// rolePhones is every phone of the scenario in one process: the webhook
// endpoint the gateways push to (POST /push?c=<phone>), and for each push a
// person who opens the prompt, thinks, and decides, through the device API
// of the instance the phone talks to (the other one when that one does
// not answer, as behind a load balancer). Commands on stdin: "bases
// URL,URL" (the instances), "load FILE" (the phones' states, as the
// enrolment left them), "mode quiet" (approve
// at once) or "mode peak" (-think-*, -p-*), "fail503 on|off" (the push
// provider of odd phones answers 503). At EOF it waits for the decisions
// in flight and exits.
func rolePhones(args []string) error {
	fs := flag.NewFlagSet("phones", flag.ExitOnError)
	out := fs.String("out", "", "decisions, JSON lines")
	var mix phoneMix
	fs.DurationVar(&mix.thinkMin, "think-min", time.Second, "shortest think time")
	fs.DurationVar(&mix.thinkMax, "think-max", 8*time.Second, "longest think time")
	fs.Float64Var(&mix.pSilent, "p-silent", 0.08, "share of prompts never answered")
	fs.Float64Var(&mix.pDeny, "p-deny", 0.06, "share denied")
	fs.Float64Var(&mix.pFraud, "p-fraud", 0.01, "share reported as fraud")
	_ = fs.Parse(args)
	w, err := createJSONLines(*out)
	if err != nil {
		return err
	}
	var baseList []string
	client := &http.Client{Transport: newTransport(512), Timeout: 15 * time.Second}

	var (
		mu      sync.Mutex
		phones  [][]*device.Phone // [phone][base]
		quiet   = true
		failing atomic.Bool
		pushes  atomic.Int64
		refused atomic.Int64
		wg      sync.WaitGroup
		codes   = &codeBox{m: map[string]string{}}
	)
	decide := func(idx int, id string, pushAt time.Time) {
		mu.Lock()
		ps := phones[idx]
		q := quiet
		mu.Unlock()
		r := rand.New(rand.NewPCG(uint64(pushAt.UnixNano()), uint64(idx)))
		decision, think := device.Approve, time.Duration(0)
		phase := "quiet"
		if !q {
			phase = "peak"
			if decision, think = mix.draw(r); decision == "" {
				return // never answered: the challenge expires
			}
		}
		rec := phoneRecord{Challenge: id, Decision: decision, Phase: phase, Push: pushAt.UnixNano(), Think: int64(think)}
		defer func() { w.write(rec) }()
		first := idx % len(ps)
		var ch *device.Challenge
		for try := range 2 * len(ps) {
			p := ps[(first+try)%len(ps)]
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			c, err := p.Get(ctx, id)
			cancel()
			if err == nil {
				ch = c
				break
			}
			var se *device.StatusError
			if errors.As(err, &se) && se.Status < 500 {
				rec.Err = err.Error() // decided, expired or cancelled meanwhile
				return
			}
			rec.Err = err.Error()
			pause(try, len(ps))
		}
		if ch == nil {
			return
		}
		rec.Ref, rec.User, rec.Kind, rec.Err = displayValue(ch, "Ref"), ch.Parsed.User, ch.Kind, ""
		var code string
		if ch.Parsed.CodeDigits > 0 && decision == device.Approve {
			// The person types the code her browser shows: it comes from
			// the load client (POST /code), or she cannot approve.
			if code = codes.wait(id, time.Until(ch.ExpiresAt)); code == "" {
				rec.Err = "no code from the browser before the challenge expired"
				return
			}
			rec.Code = true
		}
		time.Sleep(think)
		for try := range 2 * len(ps) {
			p := ps[(first+try)%len(ps)]
			rec.Tries++
			tok, err := p.DecisionTokenWithCode(ch, decision, code)
			if err != nil {
				rec.Err = err.Error()
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			rec.Sent = time.Now().UnixNano()
			status, body, err := p.PostDecisionToken(ctx, id, tok)
			cancel()
			rec.Status, rec.Err = status, ""
			if err != nil {
				rec.Err = err.Error()
			} else if status != http.StatusOK {
				rec.Err = strings.TrimSpace(string(body))
			}
			switch {
			case err == nil && status == http.StatusOK:
				rec.Accepted = true
			case err != nil && !errors.Is(err, syscall.ECONNREFUSED), status >= 500:
				// Sent, but the phone does not know what became of it:
				// a retry elsewhere then meets "already decided".
				rec.Unknown = true
			}
			// Only an answer that says nothing was decided is tried again
			// elsewhere: a 5xx from a stopping instance, or no answer.
			if err == nil && status < 500 {
				return
			}
			pause(try, len(ps))
		}
	}

	ln, err := listenAndAnnounce()
	if err != nil {
		return err
	}
	h := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/code" {
			codes.serve(rw, r)
			return
		}
		var msg struct {
			ChallengeID string `json:"challenge_id"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&msg); err != nil || msg.ChallengeID == "" {
			http.Error(rw, "bad push", http.StatusBadRequest)
			return
		}
		idx, err := strconv.Atoi(r.URL.Query().Get("c"))
		mu.Lock()
		known := err == nil && idx >= 0 && idx < len(phones)
		mu.Unlock()
		if !known || strings.HasPrefix(msg.ChallengeID, "test-") || strings.HasPrefix(msg.ChallengeID, "notice-") {
			rw.WriteHeader(http.StatusNoContent) // enrolment notices
			return
		}
		if failing.Load() && idx%2 == 1 {
			refused.Add(1)
			http.Error(rw, "provider unavailable", http.StatusServiceUnavailable)
			return
		}
		pushes.Add(1)
		at := time.Now()
		wg.Go(func() { decide(idx, msg.ChallengeID, at) })
		rw.WriteHeader(http.StatusNoContent)
	})
	go func() { _ = (&http.Server{Handler: h, ReadHeaderTimeout: time.Minute}).Serve(ln) }()

	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "load":
			states, err := readJSONLines[json.RawMessage](arg)
			if err != nil {
				return err
			}
			loaded := make([][]*device.Phone, len(states))
			for i, st := range states {
				for _, b := range baseList {
					p, err := device.Restore(b+"/onepush/device/v1", st, device.WithHTTPClient(client))
					if err != nil {
						return fmt.Errorf("phone %d: %w", i, err)
					}
					loaded[i] = append(loaded[i], p)
				}
			}
			mu.Lock()
			phones = loaded
			mu.Unlock()
		case "bases":
			baseList = strings.Split(arg, ",")
		case "mode":
			mu.Lock()
			quiet = arg == "quiet"
			mu.Unlock()
		case "fail503":
			failing.Store(arg == "on")
		}
		fmt.Printf("ok %s\n", sc.Text())
	}
	wg.Wait()
	if err := w.close(); err != nil {
		return err
	}
	fmt.Printf("done pushes=%d refused=%d\n", pushes.Load(), refused.Load())
	return nil
}

// corpHost is the corporate site's host: its transfers wait on a page and
// transfer a code (peakPolicy's transfer-corporate rule).
const corpHost = "corp.bank.test"

// codeOnPage finds the code the waiting page shows.
var codeOnPage = regexp.MustCompile(`id="code"[^>]*>\s*([0-9]+)\s*<`)

// pause waits between rounds of tries over every instance (a load
// balancer moves on to the next at once).
func pause(try, n int) {
	if (try+1)%n == 0 {
		time.Sleep(200 * time.Millisecond)
	}
}

// clientRecord is what one customer's browser saw of one request.
type clientRecord struct {
	Ref    string `json:"ref"`
	Kind   string `json:"kind"` // login or transfer
	User   int    `json:"user"`
	Inst   int    `json:"inst"`            // index of the instance that took it
	Moved  bool   `json:"moved,omitempty"` // its instance refused the connection
	Mode   string `json:"mode,omitempty"`  // "interstitial" for the corporate site's transfers
	Phase  string `json:"phase"`
	Sent   int64  `json:"sent_ns"`
	Done   int64  `json:"done_ns"`
	Status int    `json:"status,omitempty"`
	// Class is ok (the bank's answer), refused (the gateway's answer),
	// connrefused (no instance was listening), closed (the
	// connection ended without an answer), gaveup (the customer closed it
	// while held) or unanswered (no answer within the client's timeout).
	Class string `json:"class"`
	Err   string `json:"err,omitempty"`
}

// loadSummary is what a peak load client prints when it is done.
type loadSummary struct {
	Customers int64 `json:"customers"`
	Skipped   int64 `json:"skipped_no_free_user"`
	MaxLagMs  int64 `json:"max_lag_ms"`
}

// arrivals is the customers' arrival rate over time: up linearly to top
// over ramp, held, down linearly over down.
type arrivals struct {
	top              float64
	ramp, hold, down time.Duration
}

func (a arrivals) total() time.Duration { return a.ramp + a.hold + a.down }

// due is how many customers have arrived by t since the start.
func (a arrivals) due(t time.Duration) float64 {
	s := func(d time.Duration) float64 { return d.Seconds() }
	switch {
	case t <= 0:
		return 0
	case t < a.ramp:
		return a.top * s(t) * s(t) / (2 * s(a.ramp))
	case t < a.ramp+a.hold:
		return a.top*s(a.ramp)/2 + a.top*s(t-a.ramp)
	case t < a.total():
		d := s(t - a.ramp - a.hold)
		return a.top*s(a.ramp)/2 + a.top*s(a.hold) + a.top*d - a.top*d*d/(2*s(a.down))
	}
	return a.top*s(a.ramp)/2 + a.top*s(a.hold) + a.top*s(a.down)/2
}

// rolePeakLoad is one process of customers: each logs in (one of the
// users -from..-to, in turn) at the instance its user maps to and,
// when that succeeded, sends one transfer in the session. Every request
// carries a unique ref that the bank logs (in the body) and the phone
// shows, so the checks join the three records exactly.
func rolePeakLoad(args []string) error {
	fs := flag.NewFlagSet("peak", flag.ExitOnError)
	gates := fs.String("gates", "", "comma-separated gateway base URLs")
	id := fs.Int("id", 0, "this client's number (in refs)")
	from := fs.Int("from", 0, "first user")
	to := fs.Int("to", 0, "end of users (exclusive)")
	src := fs.String("src", "127.0.0.1", "comma-separated source addresses")
	out := fs.String("out", "", "requests, JSON lines")
	quietN := fs.Int("quiet", 0, "quiet phase: this many customers one after another, then exit")
	start := fs.Int64("start", 0, "peak: Unix ns of the arrivals' start")
	var a arrivals
	fs.Float64Var(&a.top, "rate", 10, "peak: customers per second at the top")
	fs.DurationVar(&a.ramp, "ramp", 10*time.Second, "peak: ramp up")
	fs.DurationVar(&a.hold, "hold", 10*time.Second, "peak: top held")
	fs.DurationVar(&a.down, "down", 5*time.Second, "peak: ramp down")
	pGone := fs.Float64("p-disconnect", 0.04, "share of customers who close the connection while held")
	pDouble := fs.Float64("p-double", 0.02, "share of logins sent twice (the second supersedes the first)")
	timeout := fs.Duration("timeout", time.Minute, "a request not answered by then is unanswered")
	pCode := fs.Float64("p-code", 0.3, "share of transfers sent to the corporate site, whose rule waits on a page with a code to type into the phone")
	phones := fs.String("phones", "", "the phones' host:port (the person carries the code there)")
	_ = fs.Parse(args)

	w, err := createJSONLines(*out)
	if err != nil {
		return err
	}
	bases := strings.Split(*gates, ",")
	var clients []*http.Client
	for _, ip := range strings.Split(*src, ",") {
		tr := newTransport(64)
		tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}).DialContext
		clients = append(clients, &http.Client{Transport: tr, Timeout: *timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }})
	}
	var seq atomic.Int64
	newRec := func(phase, kind string, u, inst int, form url.Values) clientRecord {
		ref := fmt.Sprintf("c%d-%d-%s", *id, seq.Add(1), kind[:1])
		form.Set("ref", ref)
		return clientRecord{Ref: ref, Kind: kind, User: u, Inst: inst, Phase: phase, Sent: time.Now().UnixNano()}
	}
	// do sends one request to rec's instance; an instance that does not
	// take the connection got nothing, so the load balancer sends it to
	// the next one (rec.Inst and rec.Moved say where it went).
	do := func(ctx context.Context, c *http.Client, rec *clientRecord, method, path, host string, form url.Values, cookies ...string) (*http.Response, []byte, error) {
		var resp *http.Response
		var err error
		inst := rec.Inst
		rec.Status = 0 // the status of this request only
		for try := range len(bases) {
			rec.Inst = (inst + try) % len(bases)
			var body io.Reader
			if form != nil {
				body = strings.NewReader(form.Encode())
			}
			req, _ := http.NewRequestWithContext(ctx, method, bases[rec.Inst]+path, body)
			if form != nil {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if host != "" {
				req.Host = host
			}
			if len(cookies) > 0 {
				req.Header.Set("Cookie", strings.Join(cookies, "; "))
			}
			if resp, err = c.Do(req); err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
				break
			}
			rec.Moved = true
		}
		if err != nil {
			return nil, nil, err
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		rec.Status = resp.StatusCode
		return resp, b, err
	}
	// classify sets rec's class from a transport error, or to refused
	// (an answer that is not the bank's success); done records it.
	classify := func(ctx context.Context, rec *clientRecord, err error) {
		rec.Done = time.Now().UnixNano()
		switch {
		case err == nil:
			rec.Class = "refused"
		case errors.Is(err, syscall.ECONNREFUSED):
			rec.Class, rec.Err = "connrefused", err.Error()
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
			rec.Class = "gaveup"
		case time.Duration(rec.Done-rec.Sent) >= *timeout:
			rec.Class, rec.Err = "unanswered", err.Error()
		default:
			rec.Class, rec.Err = "closed", err.Error()
		}
	}
	transferDone := func(resp *http.Response, body []byte) bool {
		return resp.StatusCode == http.StatusOK && strings.Contains(string(body), "Transfer accepted")
	}
	// send posts a held request (login or transfer) and returns what the
	// browser saw, and the bank's session after a login.
	send := func(ctx context.Context, c *http.Client, phase, kind string, u, inst int, form url.Values, cookie string) (clientRecord, string) {
		rec := newRec(phase, kind, u, inst, form)
		var cookies []string
		if cookie != "" {
			cookies = append(cookies, bank.SessionCookieName+"="+cookie)
		}
		resp, body, err := do(ctx, c, &rec, http.MethodPost, "/"+kind, "", form, cookies...)
		classify(ctx, &rec, err)
		var session string
		switch {
		case err == nil && kind == "login" && resp.StatusCode == http.StatusSeeOther && resp.Header.Get("Location") == "/dashboard":
			rec.Class = "ok"
			for _, ck := range resp.Cookies() {
				if ck.Name == bank.SessionCookieName {
					session = ck.Value
				}
			}
		case err == nil && kind == "transfer" && transferDone(resp, body):
			rec.Class = "ok"
		}
		w.write(rec)
		return rec, session
	}
	// sendWait posts a transfer on the corporate site, whose rule waits on
	// a page with a code: the browser reads the code, the person types it
	// into the phone, the page polls its status and, once it is final,
	// continues (the gateway replays the stored transfer once, on
	// approval). A customer who leaves stops polling and never continues.
	sendWait := func(ctx context.Context, c *http.Client, phase string, u, inst int, form url.Values, cookie string) {
		rec := newRec(phase, "transfer", u, inst, form)
		rec.Mode = "interstitial"
		defer func() { w.write(rec) }()
		session := bank.SessionCookieName + "=" + cookie
		resp, body, err := do(ctx, c, &rec, http.MethodPost, "/transfer", corpHost, form, session)
		if err != nil || resp.StatusCode != http.StatusOK {
			classify(ctx, &rec, err)
			return
		}
		var wait string
		for _, ck := range resp.Cookies() {
			if ck.Name == "onepush_wait" {
				wait = ck.Value
			}
		}
		challenge, _, _ := strings.Cut(wait, ".")
		m := codeOnPage.FindSubmatch(body)
		if challenge == "" || m == nil {
			rec.Err = "waiting page without challenge cookie or code"
			classify(ctx, &rec, nil)
			return
		}
		msg, _ := json.Marshal(map[string]string{"challenge": challenge, "code": string(m[1])})
		if r, err := http.Post("http://"+*phones+"/code", "application/json", strings.NewReader(string(msg))); err == nil {
			r.Body.Close()
		}
		waitCookie := "onepush_wait=" + wait
		page := "/onepush/wait/" + challenge
		deadline := time.Unix(0, rec.Sent).Add(*timeout)
		for time.Now().Before(deadline) {
			resp, body, err := do(ctx, c, &rec, http.MethodGet, page+"/status", corpHost, nil, waitCookie)
			if ctx.Err() != nil {
				classify(ctx, &rec, ctx.Err())
				return
			}
			var st struct{ Status string }
			if err != nil || resp.StatusCode != http.StatusOK || json.Unmarshal(body, &st) != nil {
				time.Sleep(500 * time.Millisecond) // an instance going away, or too many polls
				continue
			}
			if st.Status != "pending" {
				break
			}
		}
		resp, body, err = do(ctx, c, &rec, http.MethodPost, page+"/continue", corpHost, url.Values{}, session, waitCookie)
		classify(ctx, &rec, err)
		if err == nil && transferDone(resp, body) {
			rec.Class = "ok"
		}
	}
	customer := func(phase string, u int, r *rand.Rand, gone, double, code, leaves bool) {
		usr := peakUser(u)
		inst := u % len(bases)
		c := clients[u%len(clients)]
		ctx := context.Background()
		if gone {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Second+time.Duration(r.Int64N(int64(3*time.Second))))
			defer cancel()
		}
		login := func() url.Values {
			return url.Values{"contract_no": {usr.ContractNo}, "user_id": {usr.UserID}, "password": {usr.Password}}
		}
		var twice sync.WaitGroup
		if double {
			twice.Go(func() {
				time.Sleep(300 * time.Millisecond)
				send(context.Background(), c, phase, "login", u, inst, login(), "")
			})
		}
		rec, session := send(ctx, c, phase, "login", u, inst, login(), "")
		twice.Wait()
		if rec.Class != "ok" || session == "" || gone {
			return
		}
		if phase == "peak" {
			time.Sleep(300*time.Millisecond + time.Duration(r.Int64N(int64(time.Second))))
		}
		amount := strconv.FormatInt(int64(*id)*10_000_000+seq.Load()+1, 10)
		form := url.Values{"payee_account": {"P" + strconv.Itoa(*id) + "-" + amount}, "amount": {amount}, "txn_password": {usr.TxnPassword}}
		if code {
			ctx := context.Background()
			if leaves {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Second+time.Duration(r.Int64N(int64(3*time.Second))))
				defer cancel()
			}
			sendWait(ctx, c, phase, u, inst, form, session)
			return
		}
		send(context.Background(), c, phase, "transfer", u, inst, form, session)
	}

	r := rand.New(rand.NewPCG(uint64(*id), uint64(time.Now().UnixNano())))
	var sum loadSummary
	if *quietN > 0 {
		for u := *from; u < *to && u < *from+*quietN; u++ {
			customer("quiet", u, r, false, false, false, false)
			sum.Customers++
		}
		_ = w.close()
		return json.NewEncoder(os.Stdout).Encode(sum)
	}
	// Users come back in turn, never while their previous visit is still
	// going on: the pool is the morning's customers, not one each.
	busy := make([]atomic.Bool, *to-*from)
	next := 0
	take := func() (int, bool) {
		for range busy {
			i := next
			next = (next + 1) % len(busy)
			if busy[i].CompareAndSwap(false, true) {
				return i, true
			}
		}
		return 0, false
	}
	t0 := time.Unix(0, *start)
	time.Sleep(time.Until(t0))
	var wg sync.WaitGroup
	started := 0
	tick := time.NewTicker(5 * time.Millisecond)
	for now := range tick.C {
		el := now.Sub(t0)
		due := int(a.due(el))
		if lag := el - a.dueAt(started+1); due > started && lag > time.Duration(sum.MaxLagMs)*time.Millisecond {
			sum.MaxLagMs = lag.Milliseconds()
		}
		for ; started < due; started++ {
			i, ok := take()
			if !ok {
				sum.Skipped++
				continue
			}
			sum.Customers++
			gone, double := r.Float64() < *pGone, r.Float64() < *pDouble
			code := r.Float64() < *pCode
			leaves := code && r.Float64() < *pGone
			cr := rand.New(rand.NewPCG(r.Uint64(), r.Uint64()))
			wg.Go(func() {
				defer busy[i].Store(false)
				customer("peak", *from+i, cr, gone, double, code, leaves)
			})
		}
		if el >= a.total() {
			break
		}
	}
	tick.Stop()
	wg.Wait()
	if err := w.close(); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(sum)
}

// dueAt is when the n-th customer is due (the inverse of due), to 1 ms.
func (a arrivals) dueAt(n int) time.Duration {
	lo, hi := time.Duration(0), a.total()
	for hi-lo > time.Millisecond {
		mid := (lo + hi) / 2
		if a.due(mid) >= float64(n) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}
