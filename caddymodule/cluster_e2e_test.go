package caddymodule_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/phone/device"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// Several Caddy processes sharing one real redis-server: a decision taken
// through one instance releases the request another holds, the jti store
// and the exactly-once decision are shared, a Redis outage answers every
// held request without forwarding any, and `caddy reload` keeps held
// requests. Many users are bound quickly through the admin API (one phone
// serves several users), each user held once, so the per-user limits
// (4 held, 5 pushes a minute) never decide an outcome.

const clusterAdminToken = "cluster-admin-token-0123456789abcdef"

// clusterHeld is how many requests the outage and reload tests hold at once.
const clusterHeld = 100

// clusterNode is one Caddy instance of the cluster.
type clusterNode struct {
	*gateway
	adminAPI string // base URL of the onepush admin API (its own listener)
	port     int
	admin    int // Caddy's admin port
	internal int // the onepush admin API's listener
	redis    string
}

// clusterCaddyfile renders an instance's config: the Redis store, the
// gate in front of the bank, and the onepush admin API on an internal
// listener. extra goes into the site block (a reload changes it).
func (e *env) clusterCaddyfile(n *clusterNode, extra string) string {
	return e.caddyfile(n.port, n.admin, caddyConfig{
		Global:       redisGlobal(n.redis),
		SiteExtra:    extra,
		AdminAPIPort: n.internal,
		AdminToken:   clusterAdminToken,
	})
}

func (e *env) startNode(t *testing.T, redisAddr string) *clusterNode {
	t.Helper()
	n := &clusterNode{port: freePort(t), admin: freePort(t), internal: freePort(t), redis: redisAddr}
	g, err := e.runCaddy(e.clusterCaddyfile(n, ""), n.port, n.admin)
	if err != nil {
		t.Fatal(err)
	}
	n.gateway = g
	n.adminAPI = fmt.Sprintf("http://127.0.0.1:%d/onepush/admin/v1", n.internal)
	return n
}

// reload rewrites the instance's Caddyfile with extra in the site block
// and runs `caddy reload` against its admin endpoint.
func (e *env) reload(t *testing.T, n *clusterNode, extra string) {
	t.Helper()
	if err := os.WriteFile(n.file, []byte(e.clusterCaddyfile(n, extra)), 0o600); err != nil {
		t.Fatal(err)
	}
	e.caddyReload(t, n.file, fmt.Sprintf("127.0.0.1:%d", n.admin))
}

// bind binds user key to a credential through the admin API.
func (n *clusterNode) bind(t *testing.T, key, credID string) {
	t.Helper()
	resp := adminCall(t, n.adminAPI, clusterAdminToken, "", http.MethodPost, "/user/bind", map[string]string{"key": key, "credential_id": credID})
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("binding %s to %s: status %d: %s", key, credID, resp.StatusCode, readAll(t, resp))
	}
}

// approveReleasesLogin approves ch on phone and expects the held login
// behind res to reach the dashboard; when says which approval this is.
func approveReleasesLogin(t *testing.T, ctx context.Context, phone *device.Phone, ch *device.Challenge, res <-chan result, when string) {
	t.Helper()
	st, err := phone.Decide(ctx, ch, device.Approve, 0)
	decided := time.Now()
	if err != nil || st != http.StatusOK {
		t.Fatalf("approval %s: %d %v", when, st, err)
	}
	r := <-res
	t.Logf("release latency (decision answered → held response arrived) %s: %s", when, time.Since(decided))
	if r.err != nil || r.resp.StatusCode != http.StatusSeeOther || r.resp.Header.Get("Location") != "/dashboard" {
		t.Fatalf("login approved %s: %v %v %.200q", when, r.err, r.resp, r.body)
	}
}

// clusterUsers are n bank users of one contract, each with its own password.
func clusterUsers(n int) []bank.User {
	out := make([]bank.User, n)
	for i := range out {
		out[i] = bank.User{
			ContractNo: "7007", UserID: fmt.Sprintf("user%03d", i),
			Password: fmt.Sprintf("pw-%03d-cluster", i), TxnPassword: fmt.Sprintf("txn-%03d", i),
			Name: fmt.Sprintf("User %03d", i),
		}
	}
	return out
}

func userKey(u bank.User) string { return u.ContractNo + "/" + u.UserID }

// cluster is one bank, one Redis and the first instance A, with users
// bound to a handful of phones registered on A.
type cluster struct {
	e      *env
	redis  *redistest.Server
	a      *clusterNode
	users  []bank.User
	phones []*device.Phone
}

// newCluster starts Redis (extra arguments go to redis-server), the bank
// with n users, instance A, and binds the users round-robin to phones
// phones (registration is rate-limited per address, so a few phones serve
// many users, as one phone may in the bank's FAQ).
func newCluster(t *testing.T, n, phones int, redisArgs ...string) *cluster {
	t.Helper()
	srv := redistest.StartServer(t, redisArgs...)
	users := clusterUsers(n)
	e := newEnv(t, envOptions{users: users, edit: func(s string) string {
		return strings.Replace(s, "timeout: 90s", "timeout: 60s", 1)
	}})
	c := &cluster{e: e, redis: srv, a: e.startNode(t, srv.Addr()), users: users}
	for range phones {
		c.phones = append(c.phones, newPhone(t, c.a.gateway))
	}
	for i, u := range users {
		c.a.bind(t, userKey(u), c.phones[i%phones].CredentialID())
	}
	return c
}

// holdLogins posts one login per user to g and waits until the phones
// list all of them as pending. It returns the browsers' answers by user key.
func (c *cluster) holdLogins(t *testing.T, ctx context.Context, g *gateway, users []bank.User) map[string]<-chan result {
	t.Helper()
	res := make(map[string]<-chan result, len(users))
	for _, u := range users {
		res[userKey(u)] = newBrowser().postAsync(ctx, g.URL+"/login", loginBody(u))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := len(c.pending(t))
		if n == len(users) {
			return res
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d logins pending after 30s", n, len(users))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type pendingChallenge struct {
	phone *device.Phone
	ch    device.Challenge
}

// pending lists what every phone has pending, by challenge ID.
func (c *cluster) pending(t *testing.T) map[string]pendingChallenge {
	t.Helper()
	out := map[string]pendingChallenge{}
	for _, p := range c.phones {
		list, err := p.Pending(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range list {
			out[ch.ID] = pendingChallenge{p, ch}
		}
	}
	return out
}

// approveAll approves every pending challenge, a few at a time.
func approveAll(t *testing.T, pending map[string]pendingChallenge) {
	t.Helper()
	work := make(chan pendingChallenge)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for range 8 {
		wg.Go(func() {
			for pc := range work {
				st, err := pc.phone.Decide(context.Background(), &pc.ch, device.Approve, 0)
				if err != nil || st != http.StatusOK {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s (%s): %d %v", pc.ch.ID, pc.ch.Parsed.User, st, err))
					mu.Unlock()
				}
			}
		})
	}
	for _, pc := range pending {
		work <- pc
	}
	close(work)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d approvals failed: %v", len(failures), failures)
	}
}

// noneAnswered fails when any held request has been answered.
func noneAnswered(t *testing.T, res map[string]<-chan result, when string) {
	t.Helper()
	for key, ch := range res {
		select {
		case r := <-ch:
			t.Fatalf("%s: the login of %s was answered %s: %v %v %.200q", when, key, when, r.resp, r.err, r.body)
		default:
		}
	}
}

// loginsByUser counts the bank's executed logins per user ID.
func loginsByUser(ops []bank.Op) map[string]int {
	out := map[string]int{}
	for _, o := range opsOf(ops, bank.OpLogin) {
		if o.Reason == "" {
			out[o.UserID]++
		}
	}
	return out
}

// onNode returns the same phone (key and credential) talking to n's
// device API.
func onNode(t *testing.T, p *device.Phone, n *clusterNode) *device.Phone {
	t.Helper()
	state, err := p.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	q, err := device.Restore(n.URL+"/onepush/device/v1", state)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// waitFor returns the phone's pending challenge for user key.
func waitFor(t *testing.T, p *device.Phone, key string, not map[string]pendingChallenge) *device.Challenge {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		list, err := p.Pending(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range list {
			if _, old := not[ch.ID]; ch.Parsed.User == key && !old {
				return &ch
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no challenge for %s pending after 15s", key)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestClusterDecisionOnOneInstanceReleasesTheOther(t *testing.T) {
	const rounds = 6
	c := newCluster(t, 2+rounds, 1)
	b := c.e.startNode(t, c.redis.Addr())
	phoneA := c.phones[0]
	phoneB := onNode(t, phoneA, b)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("held on A, approved through B", func(t *testing.T) {
		u := c.users[0]
		res := newBrowser().postAsync(ctx, c.a.URL+"/login", loginBody(u))
		// B lists the challenge A created: the phone may ask either.
		ch := waitFor(t, phoneB, userKey(u), nil)
		if ops := c.e.ops(t); len(ops) != 0 {
			t.Fatalf("bank saw %+v while the login was held", ops)
		}
		approveReleasesLogin(t, ctx, phoneB, ch, res, "through B")
		if got := loginsByUser(c.e.ops(t)); len(got) != 1 || got[u.UserID] != 1 {
			t.Fatalf("bank logins %v, want one of %s", got, u.UserID)
		}
	})

	t.Run("a decision token accepted on A is refused on B", func(t *testing.T) {
		c.e.resetOps(t)
		u := c.users[1]
		res := newBrowser().postAsync(ctx, c.a.URL+"/login", loginBody(u))
		ch := waitFor(t, phoneA, userKey(u), nil)
		tok, err := phoneA.DecisionToken(ch, device.Approve, 0)
		if err != nil {
			t.Fatal(err)
		}
		if st, body, err := phoneA.PostDecisionToken(ctx, ch.ID, tok); err != nil || st != http.StatusOK {
			t.Fatalf("token on A: %d %v %s", st, err, body)
		}
		if st, body, err := phoneB.PostDecisionToken(ctx, ch.ID, tok); err != nil || st != http.StatusUnauthorized {
			t.Fatalf("the same token replayed on B: %d %v %s, want 401 (the jti is used)", st, err, body)
		}
		if r := <-res; r.err != nil || r.resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("approved login: %v %v", r.err, r.resp)
		}
		if got := loginsByUser(c.e.ops(t)); len(got) != 1 || got[u.UserID] != 1 {
			t.Fatalf("bank logins %v, want one of %s", got, u.UserID)
		}
	})

	t.Run("two decisions at once on A and B: one wins", func(t *testing.T) {
		c.e.resetOps(t)
		approved := map[string]bool{}
		for i := range rounds {
			u := c.users[2+i]
			res := newBrowser().postAsync(ctx, c.a.URL+"/login", loginBody(u))
			ch := waitFor(t, phoneA, userKey(u), nil)
			// B approves; A approves in even rounds and denies in odd ones,
			// so the held request must follow whichever decision won.
			decA := device.Approve
			if i%2 == 1 {
				decA = device.Deny
			}
			tokA, errA := phoneA.DecisionToken(ch, decA, 0)
			tokB, errB := phoneB.DecisionToken(ch, device.Approve, 0)
			if errA != nil || errB != nil {
				t.Fatal(errA, errB)
			}
			var wg sync.WaitGroup
			start := make(chan struct{})
			var stA, stB int
			wg.Add(2)
			go func() {
				defer wg.Done()
				<-start
				stA, _, _ = phoneA.PostDecisionToken(ctx, ch.ID, tokA)
			}()
			go func() {
				defer wg.Done()
				<-start
				stB, _, _ = phoneB.PostDecisionToken(ctx, ch.ID, tokB)
			}()
			close(start)
			wg.Wait()
			var winner string
			switch {
			case stA == http.StatusOK && stB == http.StatusConflict:
				winner = decA
			case stB == http.StatusOK && stA == http.StatusConflict:
				winner = device.Approve
			default:
				t.Fatalf("round %d: A answered %d, B answered %d; want one 200 and one 409", i, stA, stB)
			}
			r := <-res
			want := http.StatusSeeOther
			if winner == device.Deny {
				want = http.StatusForbidden
			}
			if r.err != nil || r.resp.StatusCode != want {
				t.Fatalf("round %d: %s won, browser got %v %v", i, winner, r.err, r.resp)
			}
			approved[u.UserID] = winner == device.Approve
			t.Logf("round %d: A (%s) %d, B (approve) %d", i, decA, stA, stB)
		}
		got := loginsByUser(c.e.ops(t))
		for id, ok := range approved {
			if want := map[bool]int{true: 1, false: 0}[ok]; got[id] != want {
				t.Errorf("bank executed %d logins of %s, want %d", got[id], id, want)
			}
		}
		if len(got) > rounds {
			t.Errorf("bank executed logins %v", got)
		}
	})
}

func TestClusterRedisOutageAnswersHeldRequestsAndRecovers(t *testing.T) {
	// Redis keeps its data across the restart (append-only file, synced
	// on every write), as a production Redis would.
	c := newCluster(t, clusterHeld, 5, "--appendonly", "yes", "--appendfsync", "always")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	res := c.holdLogins(t, ctx, c.a.gateway, c.users)
	before := c.pending(t)
	noneAnswered(t, res, "before Redis went away")

	killed := time.Now()
	c.redis.Kill()
	var slowest time.Duration
	deadline := time.After(15 * time.Second)
	for key, ch := range res {
		select {
		case r := <-ch:
			if r.err != nil || r.resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(r.body, "Temporarily unavailable") {
				t.Fatalf("held login of %s after Redis died: %v %v %.300q, want the 503 page", key, r.err, r.resp, r.body)
			}
			slowest = max(slowest, time.Since(killed))
		case <-deadline:
			t.Fatalf("held login of %s not answered 15s after Redis died (rule timeout 60s)", key)
		}
	}
	t.Logf("all %d held logins answered 503 within %s of Redis dying", len(res), slowest)
	if ops := c.e.ops(t); len(ops) != 0 {
		t.Fatalf("bank executed %d operations during the outage: %+v", len(ops), ops[:min(len(ops), 3)])
	}

	// Pass-through traffic is unaffected; a new matched request fails closed.
	resp, err := http.Get(c.a.URL + "/static/style.css")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pass-through during the outage: %v %v", err, resp)
	}
	resp.Body.Close()
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	r, page, err := newBrowser().post(rctx, c.a.URL+"/login", loginBody(c.users[0]))
	rcancel()
	if err != nil || r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("login during the outage: %v %v %.200q, want 503", err, r, page)
	}

	// The phone is told the gateway is unavailable, not that its
	// credential is invalid (an app could take a 401 for a revoked one).
	phone := c.phones[0]
	var se *device.StatusError
	if _, err := phone.Pending(ctx); !errors.As(err, &se) || se.Status != http.StatusServiceUnavailable {
		t.Fatalf("phone polling during the outage: %v, want HTTP 503", err)
	}

	c.redis.Restart()
	restarted := time.Now()
	// go-redis probes a server that refused dials about once a second, so
	// the gateway may answer 503 for a moment after Redis is back.
	for {
		_, err := phone.Pending(ctx)
		if err == nil {
			break
		}
		if time.Since(restarted) > 10*time.Second {
			t.Fatalf("gateway still failing 10s after Redis came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("gateway used Redis again %s after its restart", time.Since(restarted))
	u := c.users[0]
	lres := newBrowser().postAsync(ctx, c.a.URL+"/login", loginBody(u))
	ch := waitFor(t, phone, userKey(u), before)
	approveReleasesLogin(t, ctx, phone, ch, lres, "after Redis came back")

	// The prompts of the requests answered during the outage leave the
	// phones once Redis is back (the gateway closes them), and approving
	// one anyway is refused and forwards nothing.
	for {
		left := 0
		for id := range c.pending(t) {
			if _, old := before[id]; old {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Since(restarted) > 15*time.Second {
			t.Fatalf("%d prompts of requests answered during the outage still pending 15s after Redis came back", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("prompts from before the outage gone %s after the restart", time.Since(restarted))
	for _, pc := range before {
		if st, err := pc.phone.Decide(ctx, &pc.ch, device.Approve, 0); err != nil || st != http.StatusConflict {
			t.Fatalf("approving a prompt from before the outage: %d %v, want 409", st, err)
		}
		break
	}
	if got := loginsByUser(c.e.ops(t)); len(got) != 1 || got[u.UserID] != 1 {
		t.Fatalf("bank logins %v, want only the one approved after the restart (%s)", got, u.UserID)
	}
}

func TestClusterReloadKeepsHeldRequests(t *testing.T) {
	c := newCluster(t, clusterHeld, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	res := c.holdLogins(t, ctx, c.a.gateway, c.users)
	pending := c.pending(t)

	// A real change, so Caddy swaps the config: a response header. The
	// store config is the same, so the engine (and its waiters) is kept.
	c.e.reload(t, c.a, "\theader X-Cluster-Config reloaded")
	resp, err := http.Get(c.a.URL + "/static/style.css")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Cluster-Config") != "reloaded" {
		t.Fatalf("after caddy reload the new config is not serving (header %q)", resp.Header.Get("X-Cluster-Config"))
	}
	noneAnswered(t, res, "by the reload")
	if ops := c.e.ops(t); len(ops) != 0 {
		t.Fatalf("bank executed %d operations before any approval", len(ops))
	}

	approveAll(t, pending)
	deadline := time.After(30 * time.Second)
	for key, ch := range res {
		select {
		case r := <-ch:
			if r.err != nil || r.resp.StatusCode != http.StatusSeeOther || r.resp.Header.Get("Location") != "/dashboard" {
				t.Fatalf("login of %s held across the reload: %v %v %.200q", key, r.err, r.resp, r.body)
			}
		case <-deadline:
			t.Fatalf("login of %s not released 30s after its approval", key)
		}
	}
	got := loginsByUser(c.e.ops(t))
	for _, u := range c.users {
		if got[u.UserID] != 1 {
			t.Errorf("bank executed %d logins of %s, want exactly 1", got[u.UserID], u.UserID)
		}
	}
	if len(got) != len(c.users) {
		t.Errorf("bank executed logins of %d users, want %d", len(got), len(c.users))
	}
}

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
		wg.Go(func() {
			<-start
			resp, page, err := w.post(ctx, base, "otp", url.Values{"code": {code}})
			if err != nil {
				answers <- answer{err: err}
				return
			}
			answers <- answer{status: resp.StatusCode, page: page}
		})
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
