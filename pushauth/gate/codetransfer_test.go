package gate_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/phone/device"
)

// interstitialLogin makes the lifecycle policy's login wait on a page,
// with the longest timeout a rule may have.
func interstitialLogin(s string) string {
	return strings.Replace(s, "    timeout: 10s\n", "    timeout: 10m\n    mode: interstitial\n", 1)
}

var codeOnPage = regexp.MustCompile(`id="code"[^>]*>([0-9]+)<`)

// codeBrowser is the browser of a waiting page: its wait cookie is kept by
// hand, since the rig's clock is not the cookie jar's.
type codeBrowser struct {
	*br
	wait string
}

// startCodeLogin posts key's login and returns the waiting page's code
// and the challenge the phone received.
func (g *rig) startCodeLogin(b *codeBrowser, key string, p *device.Phone) (string, *device.Challenge) {
	g.t.Helper()
	a := b.post(g.t, g.srv.URL+"/login", loginForm(key))
	for _, c := range a.resp.Cookies() {
		if c.Name == "onepush_wait" {
			b.wait = c.Value
		}
	}
	m := codeOnPage.FindStringSubmatch(a.body)
	if a.status != http.StatusOK || m == nil || len(m[1]) != 6 {
		g.t.Fatalf("login: %d, want the waiting page with a 6-digit code: %.400q", a.status, a.body)
	}
	ch := waitFor(g.t, p)
	if ch.Parsed.CodeDigits != 6 || strings.Contains(ch.Context, m[1]) {
		g.t.Fatalf("phone's context: %d digits (want 6) or carries the code: %s", ch.Parsed.CodeDigits, ch.Context)
	}
	return m[1], ch
}

// wrongCodeLogin starts alice's login and approves it with a code other
// than the page's (the i-th); it returns the browser, the right code and
// the challenge.
func (g *rig) wrongCodeLogin(p *device.Phone, i int) (*codeBrowser, string, *device.Challenge) {
	g.t.Helper()
	b := &codeBrowser{br: newBr()}
	code, ch := g.startCodeLogin(b, "1001/alice", p)
	wrong := code[:5] + string('0'+(code[5]-'0'+1)%10)
	if st, _ := p.DecideWithCode(context.Background(), ch, device.Approve, wrong); st != http.StatusOK {
		g.t.Fatalf("wrong code %d: %d", i, st)
	}
	return b, code, ch
}

func (g *rig) continueWait(b *codeBrowser, ch *device.Challenge) answer {
	g.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, g.srv.URL+"/onepush/wait/"+ch.ID+"/continue", strings.NewReader(url.Values{}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Cookie", "onepush_wait="+b.wait)
	resp, err := b.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(data), resp}
}

// TestCodeTransferIsVoidAfterTenMinutes: SP 800-63B rev 4 §3.1.3 voids an
// out-of-band authentication not completed within 10 minutes. An approval
// with the right code a moment before ten minutes releases the login only
// if it is continued in time; at ten minutes nothing can be approved.
func TestCodeTransferIsVoidAfterTenMinutes(t *testing.T) {
	g := newRigWith(t, interstitialLogin)
	p := g.alice()
	g.bank.take()
	ctx := context.Background()

	for _, c := range []struct {
		name          string
		before, after time.Duration // on the clock before the approval, and after it
		decided       int           // the phone's answer to the approval
		released      bool          // whether the login reaches the bank
	}{
		{"approval at ten minutes", 10 * time.Minute, 0, http.StatusConflict, false},
		{"approved in time, released too late", 9*time.Minute + 50*time.Second, 10 * time.Second, http.StatusOK, false},
		{"in time", 9 * time.Minute, 0, http.StatusOK, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := &codeBrowser{br: newBr()}
			code, ch := g.startCodeLogin(b, "1001/alice", p)
			g.clk.Advance(c.before)
			if st, _ := p.DecideWithCode(ctx, ch, device.Approve, code); st != c.decided {
				t.Fatalf("approval with the right code after %v: %d, want %d", c.before, st, c.decided)
			}
			g.clk.Advance(c.after)
			if a := g.continueWait(b, ch); (a.status == http.StatusSeeOther) != c.released {
				t.Fatalf("continue at %v: %d %.200q, want released %v", c.before+c.after, a.status, a.body, c.released)
			}
			want := 0
			if c.released {
				want = 1 // the login, once
			}
			if ops := g.bank.take(); len(ops) != want {
				t.Fatalf("bank saw %v, want %d operations", ops, want)
			}
		})
	}
}

// TestWrongCodesCountAcrossFreshChallenges: a wrong code closes the
// challenge and counts; a fresh challenge (a fresh code) does not reset
// the count, and the fifth wrong code locks.
func TestWrongCodesCountAcrossFreshChallenges(t *testing.T) {
	g := newRigWith(t, interstitialLogin)
	p := g.alice()
	g.bank.take()
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		b, code, ch := g.wrongCodeLogin(p, i)
		if st, _ := p.DecideWithCode(ctx, ch, device.Approve, code); st != http.StatusConflict {
			t.Fatalf("right code after wrong code %d: %d, want 409", i, st)
		}
		if a := g.continueWait(b, ch); a.status == http.StatusSeeOther {
			t.Fatalf("continue after wrong code %d: %d", i, a.status)
		}
		st := g.state("1001/alice")
		if f, _ := st["failures"].(float64); int(f) != i {
			t.Fatalf("after wrong code %d: state %v", i, st)
		}
	}
	if st := g.state("1001/alice"); st["state"] != "locked" {
		t.Fatalf("after 5 wrong codes: %v, want locked", st)
	}
	if ops := g.bank.take(); len(ops) != 0 {
		t.Fatalf("bank saw %v", ops)
	}
}
