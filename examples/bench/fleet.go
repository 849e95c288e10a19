package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/onepush/onepush/examples/phone/device"
)

// fleet is the bench's phones and the users bound to them, plus the
// webhook endpoint the gateway pushes to. While acting, every push is
// answered like a phone whose user taps Approve at once.
type fleet struct {
	rcv    string // receiver host:port
	client *http.Client
	// loginForm is user u's login post (nil: the bench backend's, user and
	// password); the peak scenario logs in to the legacy bank.
	loginForm func(u int) url.Values

	mu      sync.Mutex
	phones  []*device.Phone
	sources map[string]*http.Client

	acting   atomic.Bool
	sent     sync.Map // challenge id -> time the decision was sent
	deciders sync.WaitGroup
	pushes   atomic.Int64
	failures atomic.Int64
	lastErr  atomic.Value
}

func newTransport(maxConns int) *http.Transport {
	return &http.Transport{MaxIdleConns: maxConns, MaxIdleConnsPerHost: maxConns, IdleConnTimeout: time.Minute, DisableCompression: true}
}

func newFleet() (*fleet, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := fleetAt(ln.Addr().String())
	go func() { _ = (&http.Server{Handler: http.HandlerFunc(f.push)}).Serve(ln) }()
	return f, nil
}

// fleetAt is a fleet whose phones register rcv (host:port) as their push
// endpoint, served by another process (the peak scenario's phones).
func fleetAt(rcv string) *fleet {
	return &fleet{rcv: rcv, client: &http.Client{Transport: newTransport(256), Timeout: 30 * time.Second}}
}

func (f *fleet) push(w http.ResponseWriter, r *http.Request) {
	var msg struct {
		ChallengeID string `json:"challenge_id"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&msg); err != nil || msg.ChallengeID == "" {
		http.Error(w, "bad push", http.StatusBadRequest)
		return
	}
	f.pushes.Add(1)
	idx, _ := strconv.Atoi(r.URL.Query().Get("c"))
	f.mu.Lock()
	var p *device.Phone
	if idx >= 0 && idx < len(f.phones) {
		p = f.phones[idx]
	}
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
	if p == nil || !f.acting.Load() {
		return
	}
	f.deciders.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		ch, err := p.Get(ctx, msg.ChallengeID)
		if err != nil {
			f.fail(err)
			return
		}
		tok, err := p.DecisionToken(ch, device.Approve, 0)
		if err != nil {
			f.fail(err)
			return
		}
		f.sent.Store(ch.ID, time.Now())
		status, body, err := p.PostDecisionToken(ctx, ch.ID, tok)
		if err != nil || status != http.StatusOK {
			f.fail(fmt.Errorf("decision: %d %s %v", status, body, err))
		}
	})
}

func (f *fleet) fail(err error) {
	f.failures.Add(1)
	f.lastErr.Store(err.Error())
}

// sourceClient returns the HTTP client whose connections leave from ip
// (one per address, shared by the phones registered from it).
func (f *fleet) sourceClient(ip string) *http.Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.sources[ip]; ok {
		return c
	}
	tr := newTransport(8)
	tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}).DialContext
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	if f.sources == nil {
		f.sources = map[string]*http.Client{}
	}
	f.sources[ip] = c
	return c
}

// closeIdle closes the fleet's idle connections, so they do not count as
// the gateway's own open files in the holding figure.
func (f *fleet) closeIdle() {
	f.client.CloseIdleConnections()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.sources {
		c.CloseIdleConnections()
	}
}

type codeSlot struct {
	p    *device.Phone
	step int64
}

const otpPeriod = 30

func otpStep(t time.Time) int64 { return t.Unix() / otpPeriod }

// enrol registers phones and binds users u<from>..u<to-1> through the real
// enrolment flow: the phone registers (POST /credentials, rate-limited by the
// gateway to 50/s overall and 20 per source address, so registrations
// leave from many 127.0.1.x addresses), the user logs in through the gateway
// (not enrolled yet: forwarded, session learned) and posts the credential
// id and a current security code on /onepush/enroll's form (with its
// anti-forgery token). Each code is accepted
// once, and three are valid at a time (±1 step), so one phone binds three
// users at once and one more every 30 s.
func (f *fleet) enrol(ctx context.Context, gated string, from, to int, progress func(done int)) error {
	n := to - from
	slots := make(chan codeSlot, 4*n+1024)
	var issued atomic.Int64
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	devBase := gated + "/onepush/device/v1"

	give := func(p *device.Phone, now time.Time) {
		cur := otpStep(now)
		first := cur - 1
		if now.Unix()%otpPeriod > otpPeriod-4 {
			first = cur // the previous step's code is about to lapse
		}
		for s := first; s <= cur+1; s++ {
			slots <- codeSlot{p, s}
			issued.Add(1)
		}
	}
	f.mu.Lock()
	for _, p := range f.phones {
		give(p, time.Now())
	}
	f.mu.Unlock()

	// Registrations: at the gateway's global pace, spread over addresses.
	lim := rate.NewLimiter(48, 90)
	var regErr atomic.Value
	var regs sync.WaitGroup
	var seq atomic.Int64
	for w := range 4 {
		regs.Go(func() {
			for issued.Load() < int64(n) && ctx.Err() == nil {
				if err := lim.Wait(ctx); err != nil {
					return
				}
				k := seq.Add(1)
				ip := fmt.Sprintf("127.0.1.%d", 1+(k*4+int64(w))%250)
				p, err := device.New(devBase, device.WithHTTPClient(f.sourceClient(ip)))
				if err != nil {
					regErr.Store(err)
					return
				}
				f.mu.Lock()
				idx := len(f.phones)
				f.phones = append(f.phones, p)
				f.mu.Unlock()
				err = p.Register(ctx, "webhook", fmt.Sprintf("http://%s/push?c=%d", f.rcv, idx))
				var se *device.StatusError
				if errors.As(err, &se) && se.Status == http.StatusTooManyRequests {
					time.Sleep(200 * time.Millisecond)
					continue
				}
				if err != nil {
					if ctx.Err() == nil {
						regErr.Store(err)
						cancel()
					}
					return
				}
				give(p, time.Now())
			}
		})
	}
	// Every new step makes one more code of every phone valid.
	go func() {
		for {
			next := time.Unix((otpStep(time.Now())+1)*otpPeriod, 0)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(next) + 50*time.Millisecond):
			}
			f.mu.Lock()
			ps := append([]*device.Phone(nil), f.phones...)
			f.mu.Unlock()
			s := otpStep(time.Now()) + 1
			for _, p := range ps {
				if p.CredentialID() == "" {
					continue
				}
				select {
				case slots <- codeSlot{p, s}:
					issued.Add(1)
				default:
				}
			}
		}
	}()

	users := make(chan int, n)
	for i := from; i < to; i++ {
		users <- i
	}
	close(users)
	var done atomic.Int64
	var enrolErr atomic.Value
	var workers sync.WaitGroup
	for range 32 {
		workers.Go(func() {
			for u := range users {
				if err := f.enrolUser(ctx, gated, u, slots); err != nil {
					if ctx.Err() == nil {
						enrolErr.Store(err)
						cancel()
					}
					return
				}
				if d := done.Add(1); progress != nil && d%1000 == 0 {
					progress(int(d))
				}
			}
		})
	}
	workers.Wait()
	cancel()
	regs.Wait()
	f.closeIdle()
	if e, ok := enrolErr.Load().(error); ok {
		return e
	}
	if e, ok := regErr.Load().(error); ok {
		return fmt.Errorf("registering phones: %w", e)
	}
	if int(done.Load()) != n {
		return fmt.Errorf("enrolled %d of %d users", done.Load(), n)
	}
	return nil
}

func (f *fleet) enrolUser(ctx context.Context, gated string, u int, slots <-chan codeSlot) error {
	user := "u" + strconv.Itoa(u)
	// The gateway limits enrolment posts per address like registrations
	// (20 at once, one more every 6 s), and a code that lapsed or was just
	// used costs a post too: the users' browsers leave from 2,000
	// addresses, 127.0.2.1 to 127.0.9.250, so 15,000 users with their
	// retries stay under 20 posts per address.
	src := u % 2000
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: f.sourceClient(fmt.Sprintf("127.0.%d.%d", 2+src/250, 1+src%250)).Transport, Jar: jar, Timeout: 30 * time.Second}
	form := url.Values{"user": {user}, "password": {"secret"}}
	if f.loginForm != nil {
		form = f.loginForm(u)
	}
	resp, err := browser.PostForm(gated+"/login", form)
	if err != nil {
		return fmt.Errorf("login of %s before enrolment: %w", user, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// The session cookie may come with a redirect the client followed.
	base, _ := url.Parse(gated)
	if resp.StatusCode != http.StatusOK || len(jar.Cookies(base)) == 0 {
		return fmt.Errorf("login of %s before enrolment: HTTP %d, session cookie %t", user, resp.StatusCode, len(jar.Cookies(base)) > 0)
	}
	for tries := 0; ; tries++ {
		var s codeSlot
		select {
		case s = <-slots:
		case <-ctx.Done():
			return ctx.Err()
		}
		now := time.Now()
		if cur := otpStep(now); s.step < cur-1 || (s.step == cur-1 && now.Unix()%otpPeriod > otpPeriod-3) {
			continue // lapsed while queued
		}
		code, _, err := s.p.SecurityCodeAt(time.Unix(s.step*otpPeriod, 0))
		if err != nil {
			return err
		}
		status, _, err := s.p.Enrol(ctx, browser, gated+"/onepush/enroll", url.Values{"code": {code}})
		// The gateway also limits enrolments per instance (500 a second);
		// 32 workers can outrun that in a burst. A client told 429 waits
		// and posts again, with the same code while it is valid.
		for busy := 0; err == nil && status == http.StatusTooManyRequests && busy < 20; busy++ {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(500+rand.IntN(1000)) * time.Millisecond):
			}
			if otpStep(time.Now()) > s.step+1 {
				break // the code lapsed meanwhile; take the next one
			}
			status, _, err = s.p.Enrol(ctx, browser, gated+"/onepush/enroll", url.Values{"code": {code}})
		}
		if err != nil {
			return fmt.Errorf("enrolment of %s: %w", user, err)
		}
		switch {
		case status == http.StatusTooManyRequests && otpStep(time.Now()) > s.step+1 && tries < 4:
			continue
		case status == http.StatusOK:
			return nil
		case status == http.StatusBadRequest && tries < 4:
			continue // that code was just used or lapsed; take the next one
		default:
			return fmt.Errorf("enrolment of %s with credential %s: HTTP %d", user, s.p.CredentialID(), status)
		}
	}
}
