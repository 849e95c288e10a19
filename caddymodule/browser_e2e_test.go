package caddymodule_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
)

var installChromium sync.Once

// chromiumPath finds Debian's chromium, installing it when running as root
// with apt-get; with CI=true a missing browser fails the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	find := func() string {
		for _, name := range []string{"chromium", "chromium-browser"} {
			if p, err := exec.LookPath(name); err == nil {
				return p
			}
		}
		return ""
	}
	if p := find(); p != "" {
		japaneseFont(t)
		return p
	}
	installChromium.Do(func() { aptInstall(t, "chromium missing", "chromium") })
	if p := find(); p != "" {
		japaneseFont(t)
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed and could not be installed (CI=true: failing, not skipping)")
	}
	t.Skip("chromium is not installed; run as root with apt-get or install Debian's chromium")
	return ""
}

// apt runs apt-get non-interactively. Other test binaries may be
// installing at the same moment (redis-server): it waits for dpkg's lock
// rather than fail.
func apt(args ...string) ([]byte, error) {
	cmd := exec.Command("apt-get", append([]string{"-o", "DPkg::Lock::Timeout=600"}, args...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	return cmd.CombinedOutput()
}

// aptInstall installs Debian's pkg when running as root with apt-get,
// updating the package lists and trying again once if the first attempt
// fails; a failure is only logged (the caller looks for what it needs).
func aptInstall(t *testing.T, why, pkg string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return
	}
	t.Logf("%s: apt-get install -y %s", why, pkg)
	if out, err := apt("install", "-y", pkg); err != nil {
		t.Logf("apt-get install %s: %v: %s", pkg, err, lastLines(out))
		_, _ = apt("update")
		if out, err = apt("install", "-y", pkg); err != nil {
			t.Logf("apt-get install %s after update: %v: %s", pkg, err, lastLines(out))
		}
	}
}

var installFont sync.Once

// japaneseFont makes sure Chromium can draw the Japanese pages the
// screenshots show (without a CJK font every kanji is an empty box): it
// installs Debian's IPA Gothic when fontconfig knows no Japanese font,
// running as root with apt-get; with CI=true a missing font fails.
func japaneseFont(t *testing.T) {
	t.Helper()
	have := func() bool {
		out, err := exec.Command("fc-list", ":lang=ja", "family").Output()
		return err == nil && strings.TrimSpace(string(out)) != ""
	}
	if have() {
		return
	}
	installFont.Do(func() { aptInstall(t, "no Japanese font", "fonts-ipafont-gothic") })
	if !have() && os.Getenv("CI") == "true" {
		t.Fatal("no Japanese font for chromium and none could be installed (CI=true: failing, not skipping)")
	}
}

func lastLines(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 500 {
		s = s[len(s)-500:]
	}
	return s
}

// newChrome starts a headless Chromium with a fresh profile and no
// background networking (this machine's network is closed).
func newChrome(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	path := chromiumPath(t)
	// A browser that dies while starting (seen rarely when the whole suite
	// loads this 2-core machine) is environment, not behaviour: try twice,
	// and show what it printed if both fail.
	var out syncBuffer
	for attempt := 1; ; attempt++ {
		opts := []chromedp.ExecAllocatorOption{
			chromedp.ExecPath(path),
			chromedp.Headless,
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.NoFirstRun,
			chromedp.NoDefaultBrowserCheck,
			chromedp.UserDataDir(t.TempDir()),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("disable-quic", true),
			chromedp.WindowSize(412, 915), // a phone-sized screen
			chromedp.CombinedOutput(&out),
		}
		opts = append(opts, extra...)
		actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancelC := chromedp.NewContext(actx)
		t.Cleanup(func() { cancelC(); cancelA() })
		// The first call starts the browser and must not carry a timeout.
		err := chromedp.Do(ctx)
		if err == nil {
			ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
			t.Cleanup(cancelT)
			return ctx
		}
		cancelC()
		cancelA()
		if attempt == 2 {
			t.Fatalf("starting chromium: %v\n%s", err, lastLines([]byte(out.String())))
		}
		t.Logf("chromium did not start (%v); trying once more", err)
	}
}

// screenshot writes the current page to artifacts/screenshots (or
// $ONEPUSH_ARTIFACTS) for people to look at.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("ONEPUSH_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "artifacts")
	}
	dir = filepath.Join(dir, "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	file := filepath.Join(dir, name+".png")
	if err := os.WriteFile(file, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", file)
}

// waitText waits up to 20s for text to appear in the page, across
// navigations (the waiting page submits itself on approval).
func waitText(ctx context.Context, text string) error {
	return waitJS(ctx, fmt.Sprintf("!!document.body && document.body.innerText.includes(%q)", text), fmt.Sprintf("%q", text))
}

// waitJS waits up to 20s for the JavaScript expression expr to be true,
// across navigations; the error names what and shows the page.
func waitJS(ctx context.Context, expr, what string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
	html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS(`html`)))
	return fmt.Errorf("%s did not appear within 20s; page:\n%.2000s", what, html)
}

func interstitialPolicy(s string) string {
	return strings.Replace(s, "    timeout: 90s\n", "    timeout: 90s\n    mode: interstitial\n", 1)
}

// shownCode reads the code the waiting page shows: code_digits (6 by
// default) decimal digits.
func shownCode(t *testing.T, ctx context.Context) string {
	t.Helper()
	shown, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#code`)))
	if err != nil {
		t.Fatal(err)
	}
	code := strings.TrimSpace(shown)
	if len(code) != 6 || strings.Trim(code, "0123456789") != "" {
		t.Fatalf("waiting page shows %q, want a 6-digit code", shown)
	}
	return code
}

// loginWaiting is loginInChrome and what the waiting page then shows: the
// code, and the challenge phone got for it.
func loginWaiting(t *testing.T, gw string, u bank.User, phone *device.Phone) (context.Context, string, *device.Challenge) {
	t.Helper()
	ctx := loginInChrome(t, gw, u)
	return ctx, shownCode(t, ctx), waitChallenge(t, phone)
}

// otherCode is code with its last digit changed.
func otherCode(code string) string {
	return code[:len(code)-1] + strconv.Itoa((int(code[len(code)-1]-'0')+1)%10)
}

// submitLogin opens the bank's login form through the gateway and posts it.
func submitLogin(ctx context.Context, gw string, u bank.User) error {
	return chromedp.Do(ctx,
		chromedp.Navigate(gw+"/login"),
		chromedp.WaitVisible(chromedp.CSS(`input[name=contract_no]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=contract_no]`), u.ContractNo),
		chromedp.SendKeys(chromedp.CSS(`input[name=user_id]`), u.UserID),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), u.Password),
		chromedp.Submit(chromedp.CSS(`input[name=password]`)),
		chromedp.WaitVisible(chromedp.CSS(`#status`)),
	)
}

// loginInChrome opens a new browser and submits u's login through the
// gateway gw: it stands on the waiting page when this returns.
func loginInChrome(t *testing.T, gw string, u bank.User) context.Context {
	t.Helper()
	ctx := newChrome(t)
	if err := submitLogin(ctx, gw, u); err != nil {
		t.Fatal(err)
	}
	return ctx
}

func TestBrowserInterstitialLogin(t *testing.T) {
	e := newEnv(t, envOptions{edit: interstitialPolicy})
	// Eleven challenges in a minute or two: the per-user push budget is
	// not what is tested here.
	g, phone := e.gatewayWithAlice("\t\tpush_rate 60")
	e.resetOps(t)

	t.Run("code transfer approved on the phone", func(t *testing.T) {
		ctx := loginInChrome(t, g.URL, alice)
		code := shownCode(t, ctx)
		screenshot(t, ctx, "interstitial-code-transfer")
		if n := len(e.ops(t)); n != 0 {
			t.Fatalf("bank executed %d operations while the page waits", n)
		}
		ch := waitChallenge(t, phone)
		if ch.Parsed.CodeDigits != 6 || strings.Contains(ch.Context, code) {
			t.Fatalf("phone's context asks for %d digits (want 6), or carries the code: %s", ch.Parsed.CodeDigits, ch.Context)
		}
		if st, err := phone.DecideWithCode(context.Background(), ch, device.Approve, code); err != nil || st != http.StatusOK {
			t.Fatalf("approve with the code: %d %v", st, err)
		}
		if err := waitText(ctx, "Welcome"); err != nil {
			t.Fatalf("browser did not land on the dashboard: %v", err)
		}
		screenshot(t, ctx, "interstitial-dashboard")
		if logins := opsOf(e.ops(t), bank.OpLogin); len(logins) != 1 || logins[0].UserID != "alice" {
			t.Fatalf("bank logins = %+v, want alice's one", logins)
		}
	})

	t.Run("a wrong or missing code is refused", func(t *testing.T) {
		for _, missing := range []bool{false, true} {
			e.resetOps(t)
			ctx, code, ch := loginWaiting(t, g.URL, alice, phone)
			var st int
			if missing {
				st, _ = phone.Decide(context.Background(), ch, device.Approve, 0) // no code claim
			} else {
				st, _ = phone.DecideWithCode(context.Background(), ch, device.Approve, otherCode(code))
			}
			if st != http.StatusOK {
				t.Fatalf("decision with a wrong code (missing %v): %d", missing, st)
			}
			if err := waitText(ctx, "The code did not match"); err != nil {
				screenshot(t, ctx, "failure-wrong-code")
				t.Fatalf("page did not show the refusal: %v", err)
			}
			if n := len(e.ops(t)); n != 0 {
				t.Fatalf("bank executed %d operations after a wrong code", n)
			}
			// Too late for the right code: the challenge is closed.
			if st, _ := phone.DecideWithCode(context.Background(), ch, device.Approve, code); st != http.StatusConflict {
				t.Fatalf("right code after a wrong one: %d, want 409", st)
			}
		}
	})

	t.Run("security code instead of the push", func(t *testing.T) {
		e.resetOps(t)
		ctx := loginInChrome(t, g.URL, alice)
		// The next step's code: valid now (±1 step) and never used before.
		code, _, err := phone.SecurityCodeAt(time.Now().Add(30 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(ctx,
			chromedp.Click(chromedp.CSS(`#otp-box summary`)),
			chromedp.WaitVisible(chromedp.CSS(`#otp`)),
			chromedp.SendKeys(chromedp.CSS(`#otp`), code),
		); err != nil {
			t.Fatal(err)
		}
		screenshot(t, ctx, "interstitial-otp")
		if err := chromedp.Do(ctx,
			chromedp.Click(chromedp.CSS(`#otp-submit`)),
		); err != nil {
			t.Fatal(err)
		}
		if err := waitText(ctx, "Welcome"); err != nil {
			screenshot(t, ctx, "failure-otp")
			t.Fatalf("OTP path did not land on the dashboard: %v", err)
		}
		if logins := opsOf(e.ops(t), bank.OpLogin); len(logins) != 1 {
			t.Fatalf("bank logins = %+v, want one", logins)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		e.resetOps(t)
		ctx := loginInChrome(t, g.URL, alice)
		ch := waitChallenge(t, phone)
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#cancel`))); err != nil {
			t.Fatal(err)
		}
		if err := waitText(ctx, "Cancelled"); err != nil {
			t.Fatalf("cancel: %v", err)
		}
		screenshot(t, ctx, "interstitial-cancelled")
		if st, _ := phone.Decide(context.Background(), ch, device.Approve, 0); st != http.StatusConflict {
			t.Fatalf("approval after cancel: %d, want 409", st)
		}
		if n := len(e.ops(t)); n != 0 {
			t.Fatalf("bank executed %d operations after cancel", n)
		}
	})

	t.Run("another browser with the challenge id gets nothing", func(t *testing.T) {
		e.resetOps(t)
		ctx, code, ch := loginWaiting(t, g.URL, alice, phone)
		if st, _ := phone.DecideWithCode(context.Background(), ch, device.Approve, code); st != http.StatusOK {
			t.Fatalf("approve: %d", st)
		}
		// A second browser (no cookie, or a forged one) tries to take the replay.
		for _, cookie := range []string{"", "onepush_wait=" + ch.ID + ".forged-token"} {
			req, _ := http.NewRequest(http.MethodPost, g.URL+"/onepush/wait/"+ch.ID+"/continue", nil)
			if cookie != "" {
				req.Header.Set("Cookie", cookie)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("continue from another browser (cookie %q): %d, want 404", cookie, resp.StatusCode)
			}
		}
		// The right browser still gets its dashboard.
		if err := waitText(ctx, "Welcome"); err != nil {
			t.Fatalf("the waiting browser did not continue: %v", err)
		}
		if logins := opsOf(e.ops(t), bank.OpLogin); len(logins) != 1 {
			t.Fatalf("bank logins = %d, want exactly one", len(logins))
		}
	})

	t.Run("five wrong codes across fresh challenges lock", func(t *testing.T) {
		e.resetOps(t)
		ctx := newChrome(t)
		// The earlier subtests ended with approvals: the count starts at 0.
		for i := 1; i <= 5; i++ {
			if err := submitLogin(ctx, g.URL, alice); err != nil {
				t.Fatal(err)
			}
			code := shownCode(t, ctx)
			ch := waitChallenge(t, phone)
			if st, _ := phone.DecideWithCode(context.Background(), ch, device.Approve, otherCode(code)); st != http.StatusOK {
				t.Fatalf("wrong code %d: %d", i, st)
			}
			// The page ends on the wrong code. (The fifth also locks her:
			// the lock is counted just after the challenge closes, so the
			// open page may show either; her next login below shows it.)
			if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#back`))); err != nil {
				t.Fatalf("wrong code %d: the page did not end: %v", i, err)
			}
			if i < 5 {
				if err := waitText(ctx, "The code did not match"); err != nil {
					t.Fatalf("wrong code %d: %v", i, err)
				}
			}
		}
		// Locked: her next login gets no challenge and no dashboard.
		if err := chromedp.Do(ctx,
			chromedp.Navigate(g.URL+"/login"),
			chromedp.WaitVisible(chromedp.CSS(`input[name=contract_no]`)),
			chromedp.SendKeys(chromedp.CSS(`input[name=contract_no]`), alice.ContractNo),
			chromedp.SendKeys(chromedp.CSS(`input[name=user_id]`), alice.UserID),
			chromedp.SendKeys(chromedp.CSS(`input[name=password]`), alice.Password),
			chromedp.Submit(chromedp.CSS(`input[name=password]`)),
		); err != nil {
			t.Fatal(err)
		}
		if err := waitText(ctx, "Push authentication locked"); err != nil {
			t.Fatalf("after 5 wrong codes: %v", err)
		}
		if n := len(e.ops(t)); n != 0 {
			t.Fatalf("bank executed %d operations during wrong codes", n)
		}
	})
}
