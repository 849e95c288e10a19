package httpapi_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/httpapi"
	"github.com/onepush/onepush/pushauth/pushauthtest"
)

// certificate makes a certificate for cn signed by parent (self-signed
// when parent is nil).
func certificate(t *testing.T, cn string, parent *tls.Certificate, ca bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: ca, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		IPAddresses: nil, DNSNames: []string{"localhost"}}
	signer, signerKey := tmpl, any(key)
	if parent != nil {
		signer, signerKey = parent.Leaf, parent.PrivateKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// TestClientCertificateIsTheOperator: on a listener that verifies client
// certificates, the certificate names the operator (the audit records
// that name, not the one declared); a certificate the listener did not
// verify names nobody, and a token still works beside certificates.
func TestClientCertificateIsTheOperator(t *testing.T) {
	eng, _ := pushauthtest.Engine(t, pushauth.Config{})
	ca := certificate(t, "operators CA", nil, true)
	sup := certificate(t, "sup1", &ca, false)
	stranger := certificate(t, "sup1", nil, false) // same name, not from the CA
	fp := sha256.Sum256(sup.Certificate[0])
	admin, err := httpapi.NewNamedAdmin(eng, "", []httpapi.Operator{
		{Name: "ops1", Role: httpapi.RoleSupport, Token: "ops1-token-0123456789abcdef"},
		{Name: "sup1", Role: httpapi.RoleSupervisor, CertSHA256: []string{hex.EncodeToString(fp[:])}},
	}, httpapi.DualControl{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(admin)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Leaf)
	srv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	client := func(cert *tls.Certificate) *http.Client {
		cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	call := func(c *http.Client, token, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		req.Header.Set("X-Onepush-Actor", "someone-else")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		raw, _ := json.Marshal(out)
		return resp.StatusCode, string(raw)
	}
	st, out := call(client(nil), "ops1-token-0123456789abcdef", "/onepush/admin/v1/user/unlock", `{"key":"1001/alice"}`)
	if st != http.StatusAccepted {
		t.Fatalf("unlock by ops1's token = %d %s, want 202", st, out)
	}
	var req struct {
		ID string `json:"request_id"`
	}
	_ = json.Unmarshal([]byte(out), &req)
	// The stranger's certificate carries sup1's name but no CA signed it.
	if st, out := call(client(&stranger), "", "/onepush/admin/v1/requests/"+req.ID+"/reject", ""); st != 0 && st != http.StatusUnauthorized {
		t.Fatalf("an unverified certificate = %d %s, want refused", st, out)
	}
	st, out = call(client(&sup), "", "/onepush/admin/v1/requests/"+req.ID+"/reject", "")
	if st != http.StatusOK || !strings.Contains(out, `"decided_by":"sup1"`) || !strings.Contains(out, `"status":"rejected"`) {
		t.Fatalf("sup1 by certificate rejecting = %d %s", st, out)
	}
	// A listener that asks for certificates without verifying them: even
	// sup1's own certificate names nobody there (fail closed).
	lax := httptest.NewUnstartedServer(admin)
	lax.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	lax.StartTLS()
	t.Cleanup(lax.Close)
	laxCfg := lax.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	laxCfg.Certificates = []tls.Certificate{sup}
	resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: laxCfg}}).Get(lax.URL + "/onepush/admin/v1/requests")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("an unverified certificate with sup1's fingerprint = %d, want 401", resp.StatusCode)
	}
	evs, err := eng.Audit().Query(t.Context(), pushauth.AuditQuery{Type: pushauth.AuditAdmin})
	if err != nil {
		t.Fatal(err)
	}
	var rejected bool
	for _, ev := range evs {
		if strings.Contains(ev.Actor, "someone-else") {
			t.Fatalf("the audit took the declared name: %+v", ev)
		}
		rejected = rejected || (ev.Outcome == "request.rejected" && strings.HasPrefix(ev.Actor, "sup1@"))
	}
	if !rejected {
		t.Fatalf("no rejection by sup1 in the audit: %+v", evs)
	}
}
