package caddymodule_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/onepush/onepush/examples/phone/device"
	"github.com/onepush/onepush/pushauth/httpapi"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// deviceSpec is the device API's description for app developers.
const deviceSpec = "../docs/openapi.yaml"

// loadDeviceSpec loads and validates docs/openapi.yaml (OpenAPI 3.1).
func loadDeviceSpec(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(deviceSpec)
	if err != nil {
		t.Fatalf("%s: %v", deviceSpec, err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("%s is OpenAPI %s, want 3.1", deviceSpec, doc.OpenAPI)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("%s is not a valid OpenAPI document: %v", deviceSpec, err)
	}
	return doc
}

// specOperations lists the spec's operations as "METHOD /path".
func specOperations(doc *openapi3.T) map[string]*openapi3.Operation {
	out := map[string]*openapi3.Operation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			out[method+" "+path] = op
		}
	}
	return out
}

// TestDeviceRoutesAreDocumented compares the routes the device handler
// registers with the spec's operations, both ways: an endpoint someone adds
// to pushauth/httpapi without documenting it fails here, named.
func TestDeviceRoutesAreDocumented(t *testing.T) {
	doc := loadDeviceSpec(t)
	ops := specOperations(doc)
	base := httpapi.DefaultDeviceBase
	served := map[string]bool{}
	for _, pattern := range httpapi.NewDevice(nil, "", 0).Routes() {
		method, path, ok := strings.Cut(pattern, " ")
		if !ok || !strings.HasPrefix(path, base+"/") {
			t.Errorf("device route %q: want \"METHOD %s/...\"", pattern, base)
			continue
		}
		key := method + " " + strings.TrimPrefix(path, base)
		served[key] = true
		if ops[key] == nil {
			t.Errorf("the device API serves %s but %s does not document it: add paths.%s.%s (body, every status) and exercise it in TestDeviceAPIMatchesOpenAPI",
				key, deviceSpec, strings.TrimPrefix(path, base), strings.ToLower(method))
		}
	}
	if len(served) < 6 {
		t.Fatalf("only %d device routes found: %v", len(served), served)
	}
	for key := range ops {
		if !served[key] {
			t.Errorf("%s documents %s, which the device API does not serve", deviceSpec, key)
		}
	}
}

// strictObjects makes every object schema with properties refuse members
// it does not list, for this test only: the published spec lets apps
// ignore unknown members (new ones come without a new version), but
// whatever the handlers send must be documented.
func strictObjects(s *openapi3.SchemaRef, seen map[*openapi3.Schema]bool) {
	if s == nil || s.Value == nil || seen[s.Value] {
		return
	}
	v := s.Value
	seen[v] = true
	if len(v.Properties) > 0 && v.AdditionalProperties.Has == nil && v.AdditionalProperties.Schema == nil {
		no := false
		v.AdditionalProperties.Has = &no
	}
	for _, p := range v.Properties {
		strictObjects(p, seen)
	}
	strictObjects(v.Items, seen)
	for _, l := range []openapi3.SchemaRefs{v.AllOf, v.AnyOf, v.OneOf} {
		for _, x := range l {
			strictObjects(x, seen)
		}
	}
}

// specCheck sends requests to a real gateway, finds each one's operation
// in the spec, validates the request (when it is meant to be valid) and
// every answer (status, headers, body) against it, and records which
// documented statuses were seen.
type specCheck struct {
	t      *testing.T
	doc    *openapi3.T
	router routers.Router
	base   string
	seen   map[string]bool // "METHOD /path STATUS"
	// context is the schema of a challenge's context (the contentSchema
	// of Challenge.context), made strict; batches counts the contexts
	// with a batch member it validated.
	context *openapi3.SchemaRef
	batches int
}

type deviceCall struct {
	method, path string
	auth         string // device token, "" for none
	body         any    // JSON-encoded unless []byte
	valid        bool   // the request itself conforms to the spec
	want         int    // 0: any status the spec lists
}

// do sends call, checks it and its answer against the spec and returns
// the answer's status and body.
func (c *specCheck) do(call deviceCall) (int, []byte) {
	c.t.Helper()
	var raw []byte
	switch b := call.body.(type) {
	case nil:
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			c.t.Fatal(err)
		}
	}
	build := func() *http.Request {
		var rd io.Reader
		if raw != nil {
			rd = bytes.NewReader(raw)
		}
		req, err := http.NewRequest(call.method, c.base+call.path, rd)
		if err != nil {
			c.t.Fatal(err)
		}
		if raw != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if call.auth != "" {
			req.Header.Set("Authorization", "Bearer "+call.auth)
		}
		return req
	}
	req := build()
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.t.Fatalf("%s %s: no operation in %s: %v", call.method, call.path, deviceSpec, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if call.valid {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			c.t.Errorf("%s %s: the request this test sends as valid does not conform to the spec: %v", call.method, call.path, err)
		}
		in.Request = build()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(in.Request.WithContext(ctx))
	if err != nil {
		c.t.Fatalf("%s %s: %v", call.method, call.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		c.t.Fatalf("%s %s: reading the answer: %v", call.method, call.path, err)
	}
	key := fmt.Sprintf("%s %s %d", route.Method, route.Path, resp.StatusCode)
	if err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: &openapi3filter.Options{IncludeResponseStatus: true},
	}); err != nil {
		c.t.Errorf("%s %s answered %d %.300s, which %s does not describe (add the status or the member to %s %s): %v",
			call.method, call.path, resp.StatusCode, body, deviceSpec, strings.ToLower(route.Method), route.Path, err)
	}
	if call.want != 0 && resp.StatusCode != call.want {
		c.t.Errorf("%s %s: %d %.300s, want %d", call.method, call.path, resp.StatusCode, body, call.want)
	}
	if resp.StatusCode/100 == 2 && len(body) > 0 {
		var v any
		if err := json.Unmarshal(body, &v); err == nil {
			c.checkContexts(call, v)
		}
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		c.t.Errorf("%s %s: Cache-Control %q, want no-store", call.method, call.path, cc)
	}
	c.seen[key] = true
	return resp.StatusCode, body
}

// checkContexts validates the context string of every challenge in an
// answer (v, decoded) against the spec's ChallengeContext: the response
// validation sees the context only as a string, but an app parses it and
// shows its members, so every member the gateway puts there (a batch's
// count, total and digest) must be documented as well.
func (c *specCheck) checkContexts(call deviceCall, v any) {
	c.t.Helper()
	switch v := v.(type) {
	case []any:
		for _, x := range v {
			c.checkContexts(call, x)
		}
	case map[string]any:
		for k, x := range v {
			s, ok := x.(string)
			if k != "context" || !ok {
				c.checkContexts(call, x)
				continue
			}
			var ctx any
			if err := json.Unmarshal([]byte(s), &ctx); err != nil {
				c.t.Errorf("%s %s: a challenge's context is not JSON: %v", call.method, call.path, err)
				continue
			}
			if err := c.context.Value.VisitJSON(ctx, openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse()); err != nil {
				c.t.Errorf("%s %s: the challenge context %.400s is not what %s's ChallengeContext describes (add the member to it): %v",
					call.method, call.path, s, deviceSpec, err)
			}
			if m, ok := ctx.(map[string]any); ok && m["batch"] != nil {
				c.batches++
			}
		}
	}
}

// TestDeviceAPIMatchesOpenAPI drives every documented operation and status
// of the device API through a real Caddy, in front of the real bank, on a
// real Redis (stopped at the end for the 503s), with the example phone's
// keys and tokens, and checks each request and answer against
// docs/openapi.yaml. A status no request got fails, as does any answer the
// spec does not describe.
func TestDeviceAPIMatchesOpenAPI(t *testing.T) {
	doc := loadDeviceSpec(t)
	strict := map[*openapi3.Schema]bool{}
	for _, op := range specOperations(doc) {
		for _, r := range op.Responses.Map() {
			if r.Value == nil {
				continue
			}
			for _, mt := range r.Value.Content {
				strictObjects(mt.Schema, strict)
			}
		}
	}
	ctxSchema := doc.Components.Schemas["Challenge"]
	if ctxSchema == nil || ctxSchema.Value.Properties["context"] == nil || ctxSchema.Value.Properties["context"].Value.ContentSchema == nil {
		t.Fatalf("%s: components.schemas.Challenge.properties.context has no contentSchema", deviceSpec)
	}
	ctxSchema = ctxSchema.Value.Properties["context"].Value.ContentSchema
	strictObjects(ctxSchema, strict)
	srv := redistest.StartServer(t)
	e := newEnv(t, envOptions{})
	g := e.startGateway(redisGlobal(srv.Addr()))
	base := g.URL + httpapi.DefaultDeviceBase
	doc.Servers = openapi3.Servers{{URL: base}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	c := &specCheck{t: t, doc: doc, router: router, base: base, seen: map[string]bool{}, context: ctxSchema}
	phone := newPhone(t, g)
	enroll(t, g, alice, phone)
	other := newPhone(t, g)
	tok := func(p *device.Phone) string {
		s, err := p.DeviceToken()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pubKey := func() string {
		p, err := device.New(base)
		if err != nil {
			t.Fatal(err)
		}
		k, err := p.PublicKeyB64()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	mine, theirs := "/credentials/"+phone.CredentialID(), "/credentials/"+other.CredentialID()

	c.do(deviceCall{method: "POST", path: "/credentials", body: map[string]string{"public_key": pubKey(), "platform": "none"}, valid: true, want: 201})
	c.do(deviceCall{method: "POST", path: "/credentials", body: map[string]string{"public_key": "!!", "platform": "none"}, valid: true, want: 400})
	c.do(deviceCall{method: "POST", path: "/credentials", body: map[string]string{"pubkey": pubKey()}, want: 400})

	push := map[string]string{"platform": "none", "push_token": ""}
	c.do(deviceCall{method: "PUT", path: mine + "/push-token", auth: tok(phone), body: push, valid: true, want: 204})
	c.do(deviceCall{method: "PUT", path: mine + "/push-token", auth: tok(phone), body: []byte(`{"platform":"none"} {}`), want: 400})
	c.do(deviceCall{method: "PUT", path: mine + "/push-token", body: push, want: 401})
	c.do(deviceCall{method: "PUT", path: theirs + "/push-token", auth: tok(phone), body: push, valid: true, want: 403})
	c.do(deviceCall{method: "DELETE", path: theirs, want: 401})
	c.do(deviceCall{method: "DELETE", path: theirs, auth: tok(phone), valid: true, want: 403})
	c.do(deviceCall{method: "GET", path: "/challenges", auth: "not-a-jwt", want: 401})
	c.do(deviceCall{method: "GET", path: "/challenges/nope", want: 401})
	c.do(deviceCall{method: "GET", path: "/challenges", auth: tok(phone), valid: true, want: 200})

	// A held login gives the phone a challenge to read and decide.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lb := newBrowser()
	login := lb.postAsync(ctx, g.URL+"/login", loginBody(alice))
	ch := waitChallenge(t, phone)
	var list struct {
		Challenges []struct{ ID string } `json:"challenges"`
	}
	_, body := c.do(deviceCall{method: "GET", path: "/challenges", auth: tok(phone), valid: true, want: 200})
	if err := json.Unmarshal(body, &list); err != nil || len(list.Challenges) != 1 || list.Challenges[0].ID != ch.ID {
		t.Fatalf("GET /challenges with one held login: %+v %v", list, err)
	}
	c.do(deviceCall{method: "GET", path: "/challenges/" + ch.ID, auth: tok(phone), valid: true, want: 200})
	c.do(deviceCall{method: "GET", path: "/challenges/nope", auth: tok(phone), valid: true, want: 404})
	c.do(deviceCall{method: "GET", path: "/challenges/" + ch.ID + "/rows", auth: tok(phone), valid: true, want: 404}) // a login has no rows
	decision := func(p *device.Phone, ch *device.Challenge) map[string]string {
		s, err := p.DecisionToken(ch, device.Approve, 0)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"token": s}
	}
	dpath := "/challenges/" + ch.ID + "/decision"
	c.do(deviceCall{method: "POST", path: dpath, body: map[string]string{"tok": "x"}, want: 400})
	c.do(deviceCall{method: "POST", path: dpath, body: map[string]string{"token": "not-a-jwt"}, valid: true, want: 401})
	c.do(deviceCall{method: "POST", path: dpath, body: decision(other, ch), valid: true, want: 404}) // another credential's challenge
	c.do(deviceCall{method: "POST", path: dpath, body: decision(phone, ch), valid: true, want: 200})
	if r := <-login; r.err != nil || r.resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the approved login: %v %v", r.err, r.resp)
	}
	c.do(deviceCall{method: "POST", path: dpath, body: decision(phone, ch), valid: true, want: 409})

	// A bulk transfer (the example policy's bulk-transfer rule, whose
	// aggregate: reads a CSV file part) gives a batch challenge: its
	// context binds count, total and digest, and the phone pages through
	// the rows and checks them before it signs.
	bulk := lb.uploadAsync(ctx, g.URL+"/transfer/bulk", batchFile(t, "bulk3.csv"), "format", "csv", "txn_password", alice.TxnPassword)
	bch := waitChallenge(t, phone)
	if b := bch.Parsed.Batch; b == nil || b.Count != 3 || b.Total != "3456000" || b.Source != "request" {
		t.Fatalf("the bulk upload's challenge has batch %+v, want 3 rows totalling 3456000 from the request", b)
	}
	before := c.batches
	c.do(deviceCall{method: "GET", path: "/challenges/" + bch.ID, auth: tok(phone), valid: true, want: 200})
	if c.batches != before+1 {
		t.Fatalf("GET /challenges/%s: no batch in the context the spec test validated", bch.ID)
	}
	rpath := "/challenges/" + bch.ID + "/rows"
	var rows []device.Row
	for len(rows) < 3 {
		_, body := c.do(deviceCall{method: "GET", path: fmt.Sprintf("%s?offset=%d&limit=2", rpath, len(rows)), auth: tok(phone), valid: true, want: 200})
		var page struct {
			Count, Offset int
			Rows          []device.Row
		}
		if err := json.Unmarshal(body, &page); err != nil || page.Count != 3 || page.Offset != len(rows) || len(page.Rows) != min(2, 3-len(rows)) {
			t.Fatalf("rows page at %d (limit 2): %.300s %v", len(rows), body, err)
		}
		rows = append(rows, page.Rows...)
	}
	if !reflect.DeepEqual(rows, bulk3CSV) {
		t.Fatalf("the rows paged through are %q, want the file's %q", rows, bulk3CSV)
	}
	if err := device.CheckRows(bch.Parsed.Batch, rows); err != nil {
		t.Fatalf("the phone's check of the rows against the context: %v", err)
	}
	bch.Rows = rows
	_, body = c.do(deviceCall{method: "GET", path: rpath + "?offset=3", auth: tok(phone), valid: true, want: 200})
	if !strings.Contains(string(body), `"rows":[]`) {
		t.Errorf("rows past the end: %.300s, want an empty list", body)
	}
	c.do(deviceCall{method: "GET", path: rpath + "?offset=-1", auth: tok(phone), want: 400})
	c.do(deviceCall{method: "GET", path: rpath + "?limit=0", auth: tok(phone), want: 400})
	c.do(deviceCall{method: "GET", path: rpath + "?limit=ten", auth: tok(phone), want: 400})
	c.do(deviceCall{method: "GET", path: rpath, want: 401})
	c.do(deviceCall{method: "GET", path: rpath, auth: tok(other), valid: true, want: 404}) // another credential's batch
	c.do(deviceCall{method: "GET", path: "/challenges/nope/rows", auth: tok(phone), valid: true, want: 404})
	c.do(deviceCall{method: "POST", path: "/challenges/" + bch.ID + "/decision", body: decision(phone, bch), valid: true, want: 200})
	if r := <-bulk; r.err != nil || r.resp.StatusCode != http.StatusOK {
		t.Fatalf("the approved bulk upload: %v %v", r.err, r.resp)
	}
	c.do(deviceCall{method: "GET", path: rpath, auth: tok(phone), valid: true, want: 409}) // decided: the rows are no longer shown

	c.do(deviceCall{method: "DELETE", path: theirs, auth: tok(other), valid: true, want: 204})

	// Registrations are limited per client address: bounded, until 429.
	got429 := false
	for i := 0; i < 40 && !got429; i++ {
		st, _ := c.do(deviceCall{method: "POST", path: "/credentials", body: map[string]string{"public_key": pubKey(), "platform": "none"}, valid: true})
		switch st {
		case http.StatusTooManyRequests:
			got429 = true
		case http.StatusCreated:
		default:
			t.Fatalf("registration %d: %d", i, st)
		}
	}
	if !got429 {
		t.Fatal("40 registrations from one address in a row were all accepted")
	}

	// The store goes away: the phone is told to retry, never that its
	// credential is invalid.
	srv.Kill()
	c.do(deviceCall{method: "GET", path: "/challenges", auth: tok(phone), valid: true, want: 503})
	c.do(deviceCall{method: "GET", path: "/challenges/" + ch.ID, auth: tok(phone), valid: true, want: 503})
	c.do(deviceCall{method: "GET", path: rpath, auth: tok(phone), valid: true, want: 503})
	c.do(deviceCall{method: "PUT", path: mine + "/push-token", auth: tok(phone), body: push, valid: true, want: 503})
	c.do(deviceCall{method: "DELETE", path: mine, auth: tok(phone), valid: true, want: 503})
	c.do(deviceCall{method: "POST", path: dpath, body: decision(phone, ch), valid: true, want: 503})

	var missing []string
	for key, op := range specOperations(doc) {
		for status := range op.Responses.Map() {
			if !c.seen[key+" "+status] {
				missing = append(missing, key+" "+status)
			}
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("%s documents %s but no request of this test got it: exercise it here or drop it from the spec", deviceSpec, m)
	}
}
