package pushauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Audience is the aud claim every device token must carry.
const Audience = "onepush"

const (
	maxTokenBytes    = 4096
	maxTokenLifetime = 120 * time.Second
	maxJTIBytes      = 128
)

// DeviceClaims are the claims of a device token; the decision fields are
// set only on decision tokens.
type DeviceClaims struct {
	jwt.RegisteredClaims
	Decision string `json:"decision,omitempty"`
	Ctx      string `json:"ctx,omitempty"`
	// Code is the code the user typed from the browser's waiting page
	// (code transfer), with approvals only.
	Code *string `json:"code,omitempty"`
}

// ErrBadToken covers every reason a device token is refused; the device API
// answers 401 without saying which, the log says which.
var ErrBadToken = errors.New("invalid device token")

// VerifyDeviceToken checks a device token: ES256 only, signed by the key
// of the credential named in iss, aud "onepush", iat and exp present with a
// lifetime of at most 120s, and a jti never seen before (it is used up
// here). It returns the claims and the credential.
func (e *Engine) VerifyDeviceToken(ctx context.Context, raw string) (*DeviceClaims, *Credential, error) {
	claims, cred, err := e.verifySignedToken(ctx, raw)
	if err != nil {
		return nil, nil, err
	}
	if err := e.useJTI(ctx, claims, cred); err != nil {
		return nil, nil, err
	}
	return claims, cred, nil
}

// verifySignedToken is VerifyDeviceToken without using up the jti: the
// caller must call useJTI before acting on the token.
func (e *Engine) verifySignedToken(ctx context.Context, raw string) (*DeviceClaims, *Credential, error) {
	if len(raw) > maxTokenBytes {
		return nil, nil, fmt.Errorf("%w: %d bytes is over the %d byte limit", ErrBadToken, len(raw), maxTokenBytes)
	}
	var cred *Credential
	var storeErr error // the store failed: not the token's fault, so not ErrBadToken
	claims := &DeviceClaims{}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}),
		jwt.WithAudience(Audience),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(e.cfg.TokenLeeway),
		jwt.WithTimeFunc(e.now),
	)
	_, err := parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		iss := claims.Issuer
		if iss == "" || len(iss) > 64 {
			return nil, errors.New("iss missing or too long")
		}
		c, err := e.store.GetCredential(ctx, iss)
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				storeErr = fmt.Errorf("credential %q: %w", iss, err)
			}
			return nil, fmt.Errorf("credential %q: %w", iss, err)
		}
		pub, err := parseP256(c.PublicKey)
		if err != nil {
			return nil, err
		}
		cred = c
		return pub, nil
	})
	if storeErr != nil {
		return nil, nil, storeErr
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	if claims.IssuedAt == nil {
		return nil, nil, fmt.Errorf("%w: iat missing", ErrBadToken)
	}
	if life := claims.ExpiresAt.Sub(claims.IssuedAt.Time); life > maxTokenLifetime || life <= 0 {
		return nil, nil, fmt.Errorf("%w: lifetime %s is outside (0, %s]", ErrBadToken, life, maxTokenLifetime)
	}
	if claims.ID == "" || len(claims.ID) > maxJTIBytes {
		return nil, nil, fmt.Errorf("%w: jti missing or longer than %d bytes", ErrBadToken, maxJTIBytes)
	}
	return claims, cred, nil
}

// useJTI records a verified token's jti as used; a jti seen before makes
// the token invalid.
func (e *Engine) useJTI(ctx context.Context, claims *DeviceClaims, cred *Credential) error {
	fresh, err := e.store.UseJTI(ctx, "jti/"+cred.ID+"/"+claims.ID, claims.ExpiresAt.Add(e.cfg.TokenLeeway))
	if err != nil {
		return fmt.Errorf("recording jti: %w", err)
	}
	if !fresh {
		return fmt.Errorf("%w: jti %q was already used", ErrBadToken, claims.ID)
	}
	return nil
}

func parseP256(der []byte) (*ecdsa.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("public key is not a P-256 ECDSA key")
	}
	return pub, nil
}
