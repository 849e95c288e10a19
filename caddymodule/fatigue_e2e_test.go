package caddymodule_test

import (
	"context"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
)

// browserFrom is a browser whose connections come from local address ip
// (any of 127.0.0.0/8 reaches the gateway bound to 127.0.0.1): another
// client address, as Caddy sees it, without a proxy.
func browserFrom(ip string) *browser {
	jar, _ := cookiejar.New(nil)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &browser{&http.Client{
		Jar:           jar,
		Timeout:       3 * time.Minute,
		Transport:     &http.Transport{DialContext: d.DialContext},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// answerWhileWaiting posts a login from b and, while it waits, denies
// whatever the phone shows (the customer refusing what she did not start),
// noting each challenge it denied in seen when seen is not nil.
func answerWhileWaiting(t *testing.T, ctx context.Context, b *browser, target, body string, phone *device.Phone, seen map[string]bool) *http.Response {
	t.Helper()
	res := b.postAsync(ctx, target, body)
	deadline := time.After(20 * time.Second)
	for {
		select {
		case r := <-res:
			if r.err != nil {
				t.Fatal(r.err)
			}
			return r.resp
		case <-deadline:
			t.Fatal("the login got no answer within 20s")
		case <-time.After(20 * time.Millisecond):
			if p, _ := phone.Pending(ctx); len(p) > 0 {
				if seen != nil {
					seen[p[0].ID] = true
				}
				_, _ = phone.Decide(ctx, &p[0], device.Deny, 0)
			}
		}
	}
}

// TestPushesFromAnotherAddressDoNotStopHerLogin: under a held login rule
// (approve-only, the phone rings before the password is checked), someone
// who knows alice's contract number and user ID tries 20 logins from one
// address; she denies every prompt that reaches her. Her denials are not
// failed authentications (she is not locked), and the pushes asked from
// that address come out of that address's budget, not hers: her own login
// from another address rings and succeeds.
func TestPushesFromAnotherAddressDoNotStopHerLogin(t *testing.T) {
	e := newEnv(t, envOptions{}) // the login held (approve-only)
	g, phone := e.gatewayWithAlice("")
	e.resetOps(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	atk := browserFrom("127.0.0.2")
	rang := 0
	for i := range 20 {
		resp := answerWhileWaiting(t, ctx, atk, g.URL+"/login", loginBody(alice), phone, nil)
		switch resp.StatusCode {
		case http.StatusForbidden: // denied on her phone
			rang++
		case http.StatusTooManyRequests: // that address's push budget is used up
		default:
			t.Fatalf("attempt %d from the other address: %d", i+1, resp.StatusCode)
		}
	}
	if rang == 0 || rang > 5 {
		t.Fatalf("her phone rang %d times for 20 attempts from one address, want 1 to 5 (push_rate)", rang)
	}
	if n := len(e.ops(t)); n != 0 {
		t.Fatalf("bank saw %d operations from the attempts", n)
	}
	// Her own login, from her address, in the same minute.
	if st := pushed(t, g, alice, phone, device.Approve); st != http.StatusSeeOther {
		t.Fatalf("her own login after 20 attempts from another address: %d, want 303", st)
	}
	if logins := opsOf(e.ops(t), bank.OpLogin); len(logins) != 1 {
		t.Fatalf("bank logins %+v, want hers", logins)
	}
}

// TestSupersedeRaceNeverReleasesTheAttackersRequest: the customer's held
// login waits for her phone; a second later an attacker with her password
// starts one too. The phone would show one prompt with the same contract
// and user, and approving it used to log the attacker in. Now a second
// approve-only challenge while one is pending stops both: whatever the
// customer approves releases nothing, both browsers are told to try again,
// and the bank sees no login; her retry then succeeds.
func TestSupersedeRaceNeverReleasesTheAttackersRequest(t *testing.T) {
	e := newEnv(t, envOptions{}) // the login held (approve-only)
	g, phone := e.gatewayWithAlice("")
	e.resetOps(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Her phone's app shows its prompts (polling, as a phone without a
	// push channel does).
	sim := device.NewSimulator(phone, "off", nil)
	sim.PollInterval = 50 * time.Millisecond
	simCtx, stopSim := context.WithCancel(ctx)
	simDone := make(chan error, 1)
	go func() { simDone <- sim.Run(simCtx) }()
	defer func() { stopSim(); <-simDone }()

	customer := newBrowser().postAsync(ctx, g.URL+"/login", loginBody(alice))
	hers := waitChallenge(t, phone)
	for deadline := time.Now().Add(10 * time.Second); len(sim.PendingPrompts()) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("her app never showed her prompt")
		}
	}
	attacker := browserFrom("127.0.0.2").postAsync(ctx, g.URL+"/login", loginBody(alice))
	// She approves what her phone shows once the attacker's login is in:
	// every pending prompt, and her own.
	var atkResp *http.Response
	select {
	case r := <-attacker:
		if r.err != nil {
			t.Fatal(r.err)
		}
		atkResp = r.resp
	case <-time.After(2 * time.Second):
	}
	pending, _ := phone.Pending(ctx)
	for i := range pending {
		_, _ = phone.Decide(ctx, &pending[i], device.Approve, 0)
	}
	_, _ = phone.Decide(ctx, hers, device.Approve, 0)
	if atkResp == nil {
		select {
		case r := <-attacker:
			if r.err != nil {
				t.Fatal(r.err)
			}
			atkResp = r.resp
		case <-time.After(20 * time.Second):
			t.Fatal("the attacker's login got no answer")
		}
	}
	var custResp *http.Response
	select {
	case r := <-customer:
		if r.err != nil {
			t.Fatal(r.err)
		}
		custResp = r.resp
	case <-time.After(20 * time.Second):
		t.Fatal("her login got no answer")
	}
	if atkResp.StatusCode == http.StatusSeeOther {
		t.Fatal("the customer's approval released the attacker's login")
	}
	if atkResp.StatusCode != http.StatusConflict || custResp.StatusCode != http.StatusConflict {
		t.Fatalf("attacker %d, customer %d: want both told to try again (409)", atkResp.StatusCode, custResp.StatusCode)
	}
	if logins := opsOf(e.ops(t), bank.OpLogin); len(logins) != 0 {
		t.Fatalf("bank logins %+v during the race, want none", logins)
	}
	// The phone is told why: both challenges are closed as superseded, and
	// her prompt's view says another sign-in started; her app shows it in
	// words instead of the prompt.
	if st, _ := phone.Decide(ctx, hers, device.Approve, 0); st != http.StatusConflict {
		t.Fatalf("her prompt after the race: %d, want 409", st)
	}
	if v, err := phone.Get(ctx, hers.ID); err != nil || v.Status != "superseded" || v.Reason != device.ReasonAnotherLogin {
		t.Fatalf("her prompt's view after the race: %+v, %v; want superseded with reason %s", v, err, device.ReasonAnotherLogin)
	}
	var notice *device.Notice
	for deadline := time.Now().Add(10 * time.Second); notice == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, n := range sim.Stopped() {
			if n.ID == hers.ID {
				notice = &n
			}
		}
	}
	if notice == nil || !strings.Contains(notice.Message, "Another sign-in to your account started at the same time; both were stopped") {
		t.Fatalf("her app's notices %+v, want hers saying another sign-in started and both were stopped", sim.Stopped())
	}
	if len(sim.PendingPrompts()) != 0 {
		t.Fatalf("her app still shows %d prompts after both were stopped", len(sim.PendingPrompts()))
	}
	screen := httptest.NewRecorder()
	sim.ServeHTTP(screen, httptest.NewRequest(http.MethodGet, "/", nil))
	if page := screen.Body.String(); !strings.Contains(page, `id="stopped-`+hers.ID+`"`) ||
		!strings.Contains(page, "both were stopped. If this wasn&#39;t you, report fraud.") || !strings.Contains(page, "report fraud</button>") {
		t.Fatalf("her app's screen does not show why her prompt was stopped:\n%.3000s", page)
	}
	if st := pushed(t, g, alice, phone, device.Approve); st != http.StatusSeeOther {
		t.Fatalf("her retry: %d", st)
	}
	if logins := opsOf(e.ops(t), bank.OpLogin); len(logins) != 1 {
		t.Fatalf("bank logins %+v, want her retry's", logins)
	}
}
