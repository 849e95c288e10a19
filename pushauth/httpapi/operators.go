package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// Operator roles.
const (
	// RoleSupport makes changes; those under dual control wait for a
	// supervisor.
	RoleSupport = "support"
	// RoleSupervisor also approves or rejects other operators' requests.
	RoleSupervisor = "supervisor"
)

// Operator is a named person the admin API knows, by a bearer token, a
// client certificate, or both. The audit trail names them; what they
// declare in ActorHeader is ignored.
type Operator struct {
	Name string
	Role string
	// Token is the operator's own bearer token (at least 16 characters),
	// or empty for a certificate only.
	Token string
	// CertSHA256 are the hex SHA-256 fingerprints of client certificates
	// (their DER bytes) that identify the operator on a listener with
	// mutual TLS. The listener must verify them (Caddy's client_auth,
	// mode require_and_verify): this only maps a verified certificate to
	// a name.
	CertSHA256 []string
}

// DualControl configures requests under dual control.
type DualControl struct {
	// Ops are the operations that need a supervisor's approval. nil:
	// pushauth.DefaultDualControl; empty: none.
	Ops []string
	// TTL is how long a request waits for a decision. Default 1h.
	TTL time.Duration
}

// DefaultRequestTTL is how long a request under dual control waits.
const DefaultRequestTTL = time.Hour

// operator is an Operator as the API checks it: secrets by their hash.
type operator struct {
	name, role string
	tokenHash  [32]byte
	hasToken   bool
	certs      [][32]byte
}

type operators struct{ list []operator }

type dualControl struct {
	ops []string
	ttl time.Duration
}

func (d dualControl) needs(op string) bool { return slices.Contains(d.ops, op) }

type operatorKey struct{}

// operatorOf is the operator ServeHTTP authenticated.
func operatorOf(r *http.Request) *operator {
	op, _ := r.Context().Value(operatorKey{}).(*operator)
	return op
}

// NewNamedAdmin builds the handler for named operators; the operations in
// dual.Ops then wait for another operator's approval (a supervisor).
func NewNamedAdmin(e *pushauth.Engine, base string, ops []Operator, dual DualControl, defaultGrace time.Duration) (*Admin, error) {
	if len(ops) == 0 {
		return nil, errors.New("admin API: no operator named")
	}
	var list []operator
	seen := map[string]bool{}
	tokens := map[[32]byte]string{}
	for _, o := range ops {
		switch {
		case o.Name == "" || strings.ContainsAny(o.Name, "@ \t\r\n\"") || len(o.Name) > 64:
			return nil, fmt.Errorf("admin API: operator name %q: 1 to 64 characters without spaces, quotes or @", o.Name)
		case seen[o.Name]:
			return nil, fmt.Errorf("admin API: operator %q named twice", o.Name)
		case o.Role != RoleSupport && o.Role != RoleSupervisor:
			return nil, fmt.Errorf("admin API: operator %q: role %q must be %s or %s", o.Name, o.Role, RoleSupport, RoleSupervisor)
		case o.Token == "" && len(o.CertSHA256) == 0:
			return nil, fmt.Errorf("admin API: operator %q: a token or a client certificate is required", o.Name)
		case o.Token != "" && len(o.Token) < 16:
			return nil, fmt.Errorf("admin API: operator %q: token must have at least 16 characters (got %d)", o.Name, len(o.Token))
		}
		seen[o.Name] = true
		op := operator{name: o.Name, role: o.Role}
		if o.Token != "" {
			op.tokenHash, op.hasToken = sha256.Sum256([]byte(o.Token)), true
			if other, dup := tokens[op.tokenHash]; dup {
				return nil, fmt.Errorf("admin API: operators %q and %q share a token: each needs their own", other, o.Name)
			}
			tokens[op.tokenHash] = o.Name
		}
		for _, fp := range o.CertSHA256 {
			b, err := hex.DecodeString(strings.ReplaceAll(fp, ":", ""))
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("admin API: operator %q: client certificate fingerprint %q is not a hex SHA-256", o.Name, fp)
			}
			op.certs = append(op.certs, [32]byte(b))
		}
		list = append(list, op)
	}
	d := dualControl{ops: dual.Ops, ttl: dual.TTL}
	if d.ops == nil {
		d.ops = pushauth.DefaultDualControl
	}
	for _, name := range d.ops {
		if !slices.Contains(pushauth.AdminOps, name) {
			return nil, fmt.Errorf("admin API: dual control: unknown operation %q (%s)", name, strings.Join(pushauth.AdminOps, ", "))
		}
	}
	if d.ttl <= 0 {
		d.ttl = DefaultRequestTTL
	}
	return newAdmin(e, base, operators{list: list}, d, defaultGrace), nil
}

// authenticate finds the caller's operator: by the verified client
// certificate, else by the bearer token, compared in constant time with
// every operator's (nil: neither is known).
func (ops operators) authenticate(r *http.Request) *operator {
	var found *operator
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && len(r.TLS.VerifiedChains) > 0 {
		fp := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
		for i := range ops.list {
			for _, c := range ops.list[i].certs {
				if subtle.ConstantTimeCompare(fp[:], c[:]) == 1 {
					found = &ops.list[i]
				}
			}
		}
		if found != nil {
			return found
		}
	}
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return nil
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(raw)))
	for i := range ops.list {
		if subtle.ConstantTimeCompare(got[:], ops.list[i].tokenHash[:])&boolInt(ops.list[i].hasToken) == 1 {
			found = &ops.list[i]
		}
	}
	return found
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// requests only exist with named operators.
func (a *Admin) named(w http.ResponseWriter, r *http.Request) bool {
	if op := operatorOf(r); op == nil || op.name == "" {
		writeErr(w, http.StatusNotFound, "dual control needs named operators (operator blocks), not the single token")
		return false
	}
	return true
}

func (a *Admin) listRequests(w http.ResponseWriter, r *http.Request) {
	if !a.named(w, r) {
		return
	}
	rs, err := a.Engine.AdminRequestsOpen(r.Context())
	if err != nil {
		a.fail(w, err)
		return
	}
	if rs == nil {
		rs = []*pushauth.AdminRequest{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"requests": rs})
}

func (a *Admin) showRequest(w http.ResponseWriter, r *http.Request) {
	if !a.named(w, r) {
		return
	}
	req, err := a.Engine.Store().GetAdminRequest(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, req)
}

// decideRequest approves or rejects a request (a supervisor other than
// its requester), or collects an approved activation code (its requester).
func (a *Admin) decideRequest(w http.ResponseWriter, r *http.Request) {
	if !a.named(w, r) {
		return
	}
	op, id, addr := operatorOf(r), r.PathValue("id"), clientAddr(a.ClientIP, r)
	ctx := r.Context()
	switch decision := r.PathValue("decision"); decision {
	case "approve", "reject":
		req, err := a.Engine.DecideAdminRequest(ctx, id, decision == "approve", pushauth.Approver{Name: op.name, Supervisor: op.role == RoleSupervisor, Addr: addr})
		if err != nil {
			if req != nil && req.Status == pushauth.AdminRequestExpired {
				writeErr(w, http.StatusGone, err.Error())
				return
			}
			a.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, req)
	case "collect":
		code, _, err := a.Engine.CollectActivationCode(ctx, id, op.name, addr)
		if err != nil {
			a.fail(w, err)
			return
		}
		writeCode(w, code)
	default:
		writeErr(w, http.StatusNotFound, fmt.Sprintf("unknown decision %q (approve, reject, collect)", decision))
	}
}
