// Package passkeytest is a software authenticator for tests: it makes
// registrations ("none" attestation) and signs assertions over whatever
// clientDataJSON and rpIdHash a test asks for, so a test can forge what a
// real browser never sends. Built from a virtual authenticator's exported
// key (CDP WebAuthn.getCredentials) it signs as that authenticator.
package passkeytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
)

// Authenticator holds one ES256 credential.
type Authenticator struct {
	RPID  string
	ID    []byte
	Key   *ecdsa.PrivateKey
	Count uint32
	// Flags of the next responses: user present and verified by default.
	Flags byte
}

// Flag bits of authenticator data.
const (
	FlagUP byte = 0x01
	FlagUV byte = 0x04
	FlagAT byte = 0x40
)

// New makes a fresh credential for rpID.
func New(rpID string) (*Authenticator, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	return &Authenticator{RPID: rpID, ID: id, Key: k, Flags: FlagUP | FlagUV}, nil
}

// FromPKCS8 is the credential id with the PKCS#8 private key a virtual
// authenticator exported, its counter at count.
func FromPKCS8(rpID string, id, pkcs8 []byte, count uint32) (*Authenticator, error) {
	k, err := x509.ParsePKCS8PrivateKey(pkcs8)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("passkeytest: not an ECDSA key")
	}
	return &Authenticator{RPID: rpID, ID: id, Key: ek, Count: count, Flags: FlagUP | FlagUV}, nil
}

// COSEKey is the credential public key as an authenticator encodes it.
func (a *Authenticator) COSEKey() []byte {
	pub, _ := a.Key.PublicKey.ECDH()
	b := pub.Bytes() // 0x04 ‖ X ‖ Y
	k, _ := webauthncbor.Marshal(webauthncose.EC2PublicKeyData{
		PublicKeyData: webauthncose.PublicKeyData{KeyType: int64(webauthncose.EllipticKey), Algorithm: int64(webauthncose.AlgES256)},
		Curve:         1, XCoord: b[1:33], YCoord: b[33:],
	})
	return k
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// RPIDHash is SHA-256 of the authenticator's RP ID.
func (a *Authenticator) RPIDHash() []byte {
	h := sha256.Sum256([]byte(a.RPID))
	return h[:]
}

func (a *Authenticator) authData(rpIDHash []byte, flags byte, attested []byte) []byte {
	d := slices.Concat(rpIDHash, []byte{flags})
	d = binary.BigEndian.AppendUint32(d, a.Count)
	return append(d, attested...)
}

// Register returns the JSON of a registration response (toJSON()) for
// challenge at origin.
func (a *Authenticator) Register(challenge []byte, origin string) []byte {
	cd, _ := json.Marshal(map[string]any{"type": "webauthn.create", "challenge": b64(challenge), "origin": origin, "crossOrigin": false})
	att := make([]byte, 16) // AAGUID: none
	att = binary.BigEndian.AppendUint16(att, uint16(len(a.ID)))
	att = append(att, a.ID...)
	att = append(att, a.COSEKey()...)
	ad := a.authData(a.RPIDHash(), a.Flags|FlagAT, att)
	obj, _ := webauthncbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": ad})
	out, _ := json.Marshal(map[string]any{
		"id": b64(a.ID), "rawId": b64(a.ID), "type": "public-key",
		"response":               map[string]any{"clientDataJSON": b64(cd), "attestationObject": b64(obj)},
		"clientExtensionResults": map[string]any{},
	})
	return out
}

// Assert counts one use and returns the JSON of an assertion response
// over clientDataJSON exactly as given, with rpIDHash (nil: the right
// one) in its authenticator data.
func (a *Authenticator) Assert(clientDataJSON, rpIDHash []byte) []byte {
	if rpIDHash == nil {
		rpIDHash = a.RPIDHash()
	}
	a.Count++
	ad := a.authData(rpIDHash, a.Flags, nil)
	h := sha256.Sum256(clientDataJSON)
	digest := sha256.Sum256(slices.Concat(ad, h[:]))
	sig, _ := ecdsa.SignASN1(rand.Reader, a.Key, digest[:])
	out, _ := json.Marshal(map[string]any{
		"id": b64(a.ID), "rawId": b64(a.ID), "type": "public-key",
		"response": map[string]any{
			"clientDataJSON": b64(clientDataJSON), "authenticatorData": b64(ad), "signature": b64(sig),
		},
		"clientExtensionResults": map[string]any{},
	})
	return out
}

// ClientData is clientDataJSON for a webauthn.get of challenge at origin.
func ClientData(typ string, challenge []byte, origin string, extra map[string]any) []byte {
	m := map[string]any{"type": typ, "challenge": b64(challenge), "origin": origin, "crossOrigin": false}
	for k, v := range extra {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return b
}
