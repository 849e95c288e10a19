package caddymodule_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
)

// TestLongPollFloodDoesNotStarveHeldLogins: one browser (or a script with
// its cookie) opens 100 status long polls on its waiting page from one
// address. At most two wait, the rest get 429 at once, and the slots of
// held requests (max_held 8) stay free: eight other customers' logins are
// held and released as usual. Before polls were bounded apart, 20 polls
// filled max_held and other logins got 503.
func TestLongPollFloodDoesNotStarveHeldLogins(t *testing.T) {
	const others, polls = 8, 100
	users := append(bank.DefaultUsers(), clusterUsers(others)...)
	e := newEnv(t, envOptions{users: users, edit: interstitialTransfers})
	n := e.startAdminNode(t, "\t\tmax_held 8\n\t\tpush_rate 30")
	phone := newPhone(t, n.gateway)
	enroll(t, n.gateway, alice, phone)
	for _, u := range users[3:] {
		n.bind(t, userKey(u), phone.CredentialID())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	b := loggedIn(t, e, n.gateway, phone)
	w := startWait(t, ctx, b, n.URL+"/transfer", transferForm("5550001", "1200", alice.TxnPassword))
	transfer := waitChallenge(t, phone)

	type pollResult struct {
		code   int
		status string
		err    error
	}
	results := make(chan pollResult, polls)
	pollCtx, stopPolls := context.WithCancel(ctx)
	defer stopPolls()
	for range polls {
		go func() {
			code, st, err := w.status(pollCtx, n.URL)
			results <- pollResult{code, st, err}
		}()
	}
	refused := 0
	deadline := time.After(20 * time.Second)
	for refused < polls-2 {
		select {
		case r := <-results:
			if r.err != nil || r.code != http.StatusTooManyRequests {
				t.Fatalf("a poll over the bound was answered %d %q %v, want 429", r.code, r.status, r.err)
			}
			refused++
		case <-deadline:
			t.Fatalf("%d of %d polls refused after 20s, want %d", refused, polls, polls-2)
		}
	}

	// Two polls still wait. Eight other customers log in: all held.
	held := map[string]<-chan result{}
	for _, u := range users[3:] {
		held[userKey(u)] = newBrowser().postAsync(ctx, n.URL+"/login", loginBody(u))
	}
	pending := map[string]*device.Challenge{}
	waitUntil := time.Now().Add(30 * time.Second)
	for len(pending) < others {
		list, err := phone.Pending(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range list {
			if ch.ID != transfer.ID {
				pending[ch.ID] = &ch
			}
		}
		if time.Now().After(waitUntil) {
			t.Fatalf("%d of %d logins held after 30s", len(pending), others)
		}
		time.Sleep(50 * time.Millisecond)
	}
	noneAnswered(t, held, "while the polls waited")
	select {
	case r := <-results:
		t.Fatalf("one of the two waiting polls ended early: %d %q %v", r.code, r.status, r.err)
	default:
	}
	var wg sync.WaitGroup
	for _, ch := range pending {
		wg.Go(func() {
			if st, err := phone.Decide(ctx, ch, device.Approve, 0); err != nil || st != http.StatusOK {
				t.Errorf("approving %s: %d %v", ch.Parsed.User, st, err)
			}
		})
	}
	wg.Wait()
	for key, ch := range held {
		if r := <-ch; r.err != nil || r.resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("login of %s: %v %v, want 303", key, r.err, r.resp)
		}
	}
	logins := loginsByUser(e.ops(t))
	for _, u := range users[3:] {
		if logins[u.UserID] != 1 {
			t.Errorf("bank executed %d logins of %s, want 1", logins[u.UserID], u.UserID)
		}
	}

	// The two waiting polls hear the approval of the transfer, and the
	// page's continue executes it once.
	if st, err := phone.DecideWithCode(ctx, transfer, device.Approve, w.code); err != nil || st != http.StatusOK {
		t.Fatalf("approving the transfer: %d %v", st, err)
	}
	for range 2 {
		select {
		case r := <-results:
			if r.err != nil || r.code != http.StatusOK || r.status != "approved" {
				t.Fatalf("a waiting poll after the approval: %d %q %v", r.code, r.status, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a waiting poll did not hear the approval")
		}
	}
	if resp, page, err := w.post(ctx, n.URL, "continue", nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("continue: %v %v %.200q", err, resp, page)
	}
	if got := transfersOf(e.ops(t)); got[alice.UserID] != 1 {
		t.Fatalf("bank executed %d transfers of alice, want 1", got[alice.UserID])
	}
}
