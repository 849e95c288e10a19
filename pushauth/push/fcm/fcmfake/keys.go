package fcmfake

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
)

// WriteServiceAccount writes a service-account JSON file for project with
// a fresh RSA key and token_uri pointing at this server, trusts that key,
// and returns the file's path (pass it as the FCM credentials file).
func (s *Server) WriteServiceAccount(dir, project string) (string, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	var kid [20]byte
	_, _ = rand.Read(kid[:])
	email := "onepush-push@" + project + ".iam.gserviceaccount.com"
	data, err := json.MarshalIndent(map[string]string{
		"type":                        "service_account",
		"project_id":                  project,
		"private_key_id":              hex.EncodeToString(kid[:]),
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                email,
		"client_id":                   "100000000000000000001",
		"auth_uri":                    s.URL + "/auth",
		"token_uri":                   s.TokenURL(),
		"auth_provider_x509_cert_url": s.URL + "/certs",
		"universe_domain":             "googleapis.com",
	}, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "service-account.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", err
	}
	s.TrustServiceAccount(email, &key.PublicKey)
	return path, nil
}
