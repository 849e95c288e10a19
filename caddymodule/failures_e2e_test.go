package caddymodule_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// TestParallelWrongCodesThroughTwoInstancesLockExactly: an attacker with
// the password guesses the security code on the waiting page, sending
// max_failures wrong codes at once, half through each of two instances
// sharing Redis. Every guess is counted: exactly max_failures failures,
// the user is locked by the last one (one "locked" page, the others
// "wrong code"), and nothing reaches the bank. When each instance read,
// incremented and wrote the count, parallel guesses were lost and the
// attacker got more tries than max_failures.
func TestParallelWrongCodesThroughTwoInstancesLockExactly(t *testing.T) {
	const maxFailures = 20
	srv := redistest.StartServer(t)
	users := clusterUsers(1)
	e := newEnv(t, envOptions{users: users, edit: interstitialLogins})
	global := redisGlobal(srv.Addr()) + "\n\t\tmax_failures " + strconv.Itoa(maxFailures)
	a := e.startAdminNode(t, global)
	b := e.startAdminNode(t, global)
	phone := newPhone(t, a.gateway)
	victim := users[0]
	a.bind(t, userKey(victim), phone.CredentialID())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	w := startWait(t, ctx, newBrowser(), a.URL+"/login", loginBody(victim))
	code := wrongCode(t, func(at time.Time) (string, error) { c, _, err := phone.SecurityCodeAt(at); return c, err })
	type answer struct {
		status int
		page   string
		err    error
	}
	answers := make(chan answer, maxFailures)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range maxFailures {
		base := a.URL
		if i%2 == 1 {
			base = b.URL
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, page, err := w.post(ctx, base, "otp", url.Values{"code": {code}})
			if err != nil {
				answers <- answer{err: err}
				return
			}
			answers <- answer{status: resp.StatusCode, page: page}
		}()
	}
	close(start)
	wg.Wait()
	close(answers)
	byStatus := map[int]int{}
	for a := range answers {
		if a.err != nil {
			t.Fatalf("a guess got no answer: %v", a.err)
		}
		byStatus[a.status]++
		if a.status == http.StatusForbidden && !strings.Contains(a.page, "locked") {
			t.Errorf("403 page without the lock notice: %.300q", a.page)
		}
	}
	state, failures := a.userState(t, userKey(victim))
	if failures != maxFailures || state != "locked" {
		t.Fatalf("after %d parallel wrong codes through two instances: %d failures counted, state %q; want %d, locked (answers %v)",
			maxFailures, failures, state, maxFailures, byStatus)
	}
	if byStatus[http.StatusForbidden] != 1 || byStatus[http.StatusBadRequest] != maxFailures-1 {
		t.Fatalf("answers by status %v, want one 403 (locked) and %d 400 (wrong code)", byStatus, maxFailures-1)
	}

	// Locked: the right code does not help, through either instance.
	right, err := phone.SecurityCode()
	if err != nil {
		t.Fatal(err)
	}
	for _, base := range []string{a.URL, b.URL} {
		resp, page, err := w.post(ctx, base, "otp", url.Values{"code": {right}})
		if err != nil || resp.StatusCode == http.StatusOK {
			t.Fatalf("the right code after the lock through %s: %v %v %.200q", base, err, resp, page)
		}
	}
	resp, page, err := newBrowser().post(ctx, b.URL+"/login", loginBody(victim))
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a new login of the locked user: %v %v %.200q, want 403", err, resp, page)
	}
	if logins := opsOf(e.ops(t), bank.OpLogin); len(logins) != 0 {
		t.Fatalf("bank executed %d logins of a user guessing codes: %+v", len(logins), logins)
	}
}
