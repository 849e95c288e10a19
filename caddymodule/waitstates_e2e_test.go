package caddymodule_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/onepush/onepush/examples/phone/device"
)

// The waiting page as people meet it: every state in Japanese and
// English, on a desktop and on a 390×844 phone screen.

// waitView is one way of looking at a page: a language and a screen.
type waitView struct {
	lang          string
	width, height int64
}

func (v waitView) name() string {
	if v.width < 600 {
		return v.lang + "-390x844"
	}
	return v.lang + "-desktop"
}

var waitViews = []waitView{{"ja", 1280, 800}, {"en", 1280, 800}, {"ja", 390, 844}, {"en", 390, 844}}

// waitHeadings is what each state's heading says.
var waitHeadings = map[string]map[string]string{
	"waiting":    {"en": "Approve on your phone", "ja": "スマートフォンで承認してください"},
	"approved":   {"en": "Approved", "ja": "承認されました"},
	"denied":     {"en": "Not approved", "ja": "承認されませんでした"},
	"wrongcode":  {"en": "The code did not match", "ja": "確認コードが一致しませんでした"},
	"cancelled":  {"en": "Cancelled", "ja": "取り消しました"},
	"expired":    {"en": "Time ran out", "ja": "有効期限が切れました"},
	"superseded": {"en": "Stopped: another request at the same time", "ja": "同時に別の操作があったため中止しました"},
	"locked":     {"en": "Push authentication locked", "ja": "ワンプッシュ認証はロックされています"},
}

// pageControls is what a user can press on the page: the ids of visible
// buttons and links, and where the back link goes.
type pageControls struct {
	Title    string   `json:"title"`
	Controls []string `json:"controls"`
	Back     string   `json:"back"`
	Text     string   `json:"text"`
}

const readControls = `(() => {
  const vis = e => !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length);
  const ids = [];
  document.querySelectorAll("button, a, summary").forEach(e => {
    if (!vis(e)) return;
    ids.push(e.id || (e.parentElement && e.parentElement.id) || e.textContent.trim());
  });
  const back = document.getElementById("back");
  return {title: document.getElementById("title").textContent, controls: ids,
          back: back ? back.getAttribute("href") : "", text: document.body.innerText};
})()`

// lookAt shows the waiting page at base in view v (scripts on or off),
// checks its heading for state, and keeps a screenshot.
func lookAt(t *testing.T, ctx context.Context, base, state string, v waitView, scripts bool) pageControls {
	t.Helper()
	fail := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s %s: %v", state, v.name(), err)
		}
	}
	fail(chromedp.Do(ctx, chromedp.EmulateViewport(v.width, v.height)))
	_, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Accept-Language": v.lang}})
	fail(err)
	_, err = chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: !scripts})
	fail(err)
	fail(chromedp.Do(ctx, chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS(`#title`))))
	pc, err := chromedp.Run(ctx, chromedp.Evaluate[pageControls](readControls))
	fail(err)
	if want := waitHeadings[state][v.lang]; pc.Title != want {
		t.Errorf("%s %s: heading %q, want %q", state, v.name(), pc.Title, want)
	}
	screenshot(t, ctx, "wait-"+state+"-"+v.name())
	return pc
}

// has reports whether the page offers control id.
func (pc pageControls) has(id string) bool {
	for _, c := range pc.Controls {
		if c == id {
			return true
		}
	}
	return false
}

// endState checks a page in a final state: a way back to the bank and
// nothing else to press (the challenge is closed: resend, cancel, the
// fallbacks and Continue would do nothing).
func endState(t *testing.T, pc pageControls, state string, v waitView) {
	t.Helper()
	if !pc.has("back") || pc.Back != "/" {
		t.Errorf("%s %s: no way back to the bank (controls %v, back %q)", state, v.name(), pc.Controls, pc.Back)
	}
	for _, dead := range []string{"cancel", "resend", "otp-box", "ocra-box", "continue-button", "check"} {
		if pc.has(dead) {
			t.Errorf("%s %s: offers %s on a closed request", state, v.name(), dead)
		}
	}
	if len(pc.Controls) != 1 {
		t.Errorf("%s %s: controls %v, want only the way back", state, v.name(), pc.Controls)
	}
	nothing := map[string]string{"en": "You are not logged in.", "ja": "ログインは完了していません。"}[v.lang]
	if !strings.Contains(pc.Text, nothing) {
		t.Errorf("%s %s: the page does not say %q:\n%s", state, v.name(), nothing, pc.Text)
	}
}

// waitBase is the address of the waiting page the browser stands on.
func waitBase(t *testing.T, ctx context.Context) string {
	t.Helper()
	base, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('form[action$="/cancel"]').action.replace(/\/cancel$/, "")`))
	if err != nil {
		t.Fatalf("reading the waiting page's address: %v", err)
	}
	return base
}

// countdown reads the time left the page shows, in seconds.
func countdown(t *testing.T, ctx context.Context) (int, float64) {
	t.Helper()
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#countdown`)))
	if err != nil {
		t.Fatal(err)
	}
	progress, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.getElementById("progress").value`))
	if err != nil {
		t.Fatal(err)
	}
	m, s, ok := strings.Cut(strings.TrimSpace(text), ":")
	mi, err1 := strconv.Atoi(m)
	si, err2 := strconv.Atoi(s)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("countdown shows %q, want m:ss", text)
	}
	return mi*60 + si, progress
}

// approveOnlyLoginRule holds a login sent to the host approve-only.test
// for an approval without a code.
const approveOnlyLoginRule = `  - name: login-approve-only
    kind: login
    match: {methods: [POST], path: {exact: /login}, hosts: [approve-only.test], fields: [contract_no, user_id, password]}
    user: {template: "{form.contract_no}/{form.user_id}"}
    timeout: 20s
`

func TestBrowserWaitingPageStates(t *testing.T) {
	const timeout = 20 * time.Second
	e, g, phone := newAliceEnv(t, envOptions{edit: func(s string) string {
		s = strings.Replace(interstitialPolicy(s), "    timeout: 90s\n", "    timeout: 20s\n", 1)
		// An approve-only login of alice's (held, no code) from another
		// browser stops her pending code-transfer login: the superseded
		// state. The bank ignores the extra field.
		return strings.Replace(s, "  - name: login\n", approveOnlyLoginRule+"  - name: login\n", 1)
	}}, "\t\tpush_rate 60\n\t\tpush_backoff_after 20\n\t\tmax_failures 2")
	login := func(t *testing.T) (context.Context, string, *device.Challenge) {
		t.Helper()
		ctx, code, ch := loginWaiting(t, g.URL, alice, phone)
		return ctx, code, ch
	}

	t.Run("waiting, then approved", func(t *testing.T) {
		ctx, code, ch := login(t)
		base := waitBase(t, ctx)
		first, p1 := countdown(t, ctx)
		if first < 10 || first > int(timeout/time.Second) {
			t.Fatalf("countdown starts at %d s, want near %v", first, timeout)
		}
		time.Sleep(2200 * time.Millisecond)
		second, p2 := countdown(t, ctx)
		if second >= first || p2 >= p1 {
			t.Fatalf("countdown %d → %d s, progress %v → %v: not decreasing", first, second, p1, p2)
		}
		for _, v := range waitViews {
			pc := lookAt(t, ctx, base, "waiting", v, true)
			for _, want := range []string{"cancel", "resend", "otp-box"} {
				if !pc.has(want) {
					t.Errorf("waiting %s: no %s (controls %v)", v.name(), want, pc.Controls)
				}
			}
			if pc.has("continue-button") || pc.has("back") {
				t.Errorf("waiting %s: offers Continue or leaves without cancelling (controls %v)", v.name(), pc.Controls)
			}
			if !strings.Contains(pc.Text, code) {
				t.Errorf("waiting %s: the code %s is not shown", v.name(), code)
			}
		}
		// Without JavaScript: the page says what to press, and Check
		// shows the approval with Continue.
		pc := lookAt(t, ctx, base, "waiting", waitView{"en", 390, 844}, false)
		if !pc.has("check") || !strings.Contains(pc.Text, "When you have approved on your phone, press “Check”.") {
			t.Fatalf("waiting without JavaScript: %v\n%s", pc.Controls, pc.Text)
		}
		if st, err := phone.DecideWithCode(context.Background(), ch, device.Approve, code); err != nil || st != http.StatusOK {
			t.Fatalf("approve: %d %v", st, err)
		}
		for _, v := range waitViews {
			pc := lookAt(t, ctx, base, "approved", v, false)
			if !pc.has("continue-button") || !pc.has("back") || pc.has("cancel") || pc.has("otp-box") {
				t.Errorf("approved %s: controls %v, want Continue and the way back only", v.name(), pc.Controls)
			}
		}
		if n := len(e.ops(t)); n != 0 {
			t.Fatalf("bank executed %d operations before Continue", n)
		}
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#continue-button`))); err != nil {
			t.Fatal(err)
		}
		if err := waitText(ctx, "Welcome"); err != nil {
			t.Fatalf("Continue without JavaScript: %v", err)
		}
		_, _ = chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: false})
	})

	// decided runs a login, closes it with decide, and looks at the page.
	decided := func(t *testing.T, state string, decide func(ctx context.Context, code string, ch *device.Challenge)) {
		e.resetOps(t)
		ctx, code, ch := login(t)
		base := waitBase(t, ctx)
		decide(ctx, code, ch)
		// The page notices by itself and ends (its heading is checked on
		// each look below: a lock is counted just after the challenge
		// closes, so the open page may first show the wrong code).
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#back`))); err != nil {
			t.Fatalf("%s: the open page did not end: %v", state, err)
		}
		for _, v := range waitViews {
			endState(t, lookAt(t, ctx, base, state, v, true), state, v)
		}
		if n := len(e.ops(t)); n != 0 {
			t.Fatalf("%s: bank executed %d operations", state, n)
		}
	}

	t.Run("denied", func(t *testing.T) {
		decided(t, "denied", func(_ context.Context, _ string, ch *device.Challenge) {
			if st, err := phone.Decide(context.Background(), ch, device.Deny, 0); err != nil || st != http.StatusOK {
				t.Fatalf("deny: %d %v", st, err)
			}
		})
	})

	t.Run("cancelled", func(t *testing.T) {
		decided(t, "cancelled", func(ctx context.Context, _ string, _ *device.Challenge) {
			if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#cancel`))); err != nil {
				t.Fatal(err)
			}
		})
	})

	t.Run("superseded", func(t *testing.T) {
		decided(t, "superseded", func(ctx context.Context, _ string, _ *device.Challenge) {
			// Alice's login from another browser.
			other := newBrowser()
			form := url.Values{"contract_no": {alice.ContractNo}, "user_id": {alice.UserID}, "password": {alice.Password}}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.URL+"/login", strings.NewReader(form.Encode()))
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "approve-only.test"
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if resp, _, err := other.send(req); err != nil || resp.StatusCode != http.StatusConflict {
				t.Fatalf("the other, approve-only login: %v %v, want 409 (both stopped)", resp, err)
			}
		})
	})

	t.Run("expired", func(t *testing.T) {
		e.resetOps(t)
		ctx, _, _ := login(t)
		base := waitBase(t, ctx)
		// The countdown runs out and the page shows the end by itself.
		deadline, cancel := context.WithTimeout(ctx, timeout+15*time.Second)
		defer cancel()
		if err := chromedp.Do(deadline, chromedp.WaitVisible(chromedp.CSS(`#back`))); err != nil {
			t.Fatalf("the page did not end at the deadline: %v", err)
		}
		for _, v := range waitViews {
			endState(t, lookAt(t, ctx, base, "expired", v, true), "expired", v)
		}
	})

	t.Run("wrong code", func(t *testing.T) {
		decided(t, "wrongcode", func(_ context.Context, code string, ch *device.Challenge) {
			if st, err := phone.DecideWithCode(context.Background(), ch, device.Approve, otherCode(code)); err != nil || st != http.StatusOK {
				t.Fatalf("wrong code: %d %v", st, err)
			}
		})
	})

	t.Run("locked", func(t *testing.T) {
		// The second wrong code in a row (max_failures 2) locks her.
		decided(t, "locked", func(_ context.Context, code string, ch *device.Challenge) {
			if st, err := phone.DecideWithCode(context.Background(), ch, device.Approve, otherCode(code)); err != nil || st != http.StatusOK {
				t.Fatalf("wrong code: %d %v", st, err)
			}
		})
	})
	if t.Failed() {
		t.Log(fmt.Sprintf("screenshots of every state: %s", "artifacts/screenshots/wait-*.png"))
	}
}
