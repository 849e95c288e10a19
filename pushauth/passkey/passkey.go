// Package passkey verifies WebAuthn registrations and assertions for the
// gateway, with go-webauthn's parsing and verification: assertions of
// `navigator.credentials.get` (clientDataJSON type "webauthn.get") and of
// Secure Payment Confirmation (type "payment.get", whose `payment` member
// names what the browser showed: payee, amount, instrument). No HTTP and
// no storage here: the gate hands in the bytes and the expectations.
package passkey

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
)

// MaxResponse bounds the JSON of one registration or assertion the gate
// reads: an attestation with a certificate chain fits; more is refused.
const MaxResponse = 32 << 10

// ErrRejected wraps every reason a response is refused (the gate answers
// 401): the message says which check failed, never a key.
var ErrRejected = errors.New("passkey response rejected")

// RP is the relying party the gateway speaks for: the bank's domain.
type RP struct {
	// ID is the RP ID (a registrable domain: "bank.example.co.jp"); the
	// rpIdHash of every response must be its SHA-256.
	ID string
	// Name is shown by some authenticators when a passkey is created.
	Name string
	// Origins are the exact origins (scheme://host[:port]) pages asking
	// for passkeys are served from; clientDataJSON's origin must be one.
	Origins []string
}

// Challenge is what the gate asks a passkey to sign for a challenge
// context: SHA-256(context) ‖ nonce. The assertion is bound to exactly
// what the phone would have shown (user, amount, payee, service, origin,
// challenge id) and, by the nonce, to one asking.
func Challenge(context string, nonce []byte) []byte {
	h := sha256.Sum256([]byte(context))
	return append(h[:], nonce...)
}

func reject(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRejected, fmt.Sprintf(format, args...))
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Registered is a verified new credential.
type Registered struct {
	ID        []byte
	PublicKey []byte // COSE
	SignCount uint32
	AAGUID    []byte
}

// algorithms are the public key types a passkey may have: ES256 and
// EdDSA, and RS256 for Windows Hello's older keys.
var algorithms = []protocol.CredentialParameter{
	{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgES256},
	{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgEdDSA},
	{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgRS256},
}

// CreationOptions is the JSON (PublicKeyCredentialCreationOptionsJSON)
// the page hands to PublicKeyCredential.parseCreationOptionsFromJSON: a
// discoverable credential with user verification required, registered
// with the payment extension so Secure Payment Confirmation can use it
// (which browsers allow on platform authenticators only: Touch ID,
// Windows Hello, Android's screen lock).
// exclude lists the user's passkeys, so an authenticator is not
// registered twice.
func (rp RP) CreationOptions(challenge, userHandle []byte, userName, displayName string, exclude [][]byte, timeoutMS int) map[string]any {
	ex := make([]map[string]any, 0, len(exclude))
	for _, id := range exclude {
		ex = append(ex, map[string]any{"type": "public-key", "id": b64(id)})
	}
	return map[string]any{
		"challenge":          b64(challenge),
		"rp":                 map[string]any{"id": rp.ID, "name": rp.Name},
		"user":               map[string]any{"id": b64(userHandle), "name": userName, "displayName": displayName},
		"pubKeyCredParams":   algorithms,
		"timeout":            timeoutMS,
		"excludeCredentials": ex,
		"authenticatorSelection": map[string]any{
			"residentKey": "required", "requireResidentKey": true, "userVerification": "required",
			// The payment extension needs a platform authenticator.
			"authenticatorAttachment": "platform",
		},
		"attestation": "none",
		"extensions":  map[string]any{"payment": map[string]any{"isPayment": true}},
	}
}

// VerifyRegistration checks a registration response (the JSON of the
// credential's toJSON()) against challenge: type webauthn.create, the
// challenge, an origin of rp, rpIdHash, user presence and verification,
// an allowed algorithm and the attestation statement.
func (rp RP) VerifyRegistration(raw []byte, challenge []byte) (*Registered, error) {
	if len(raw) > MaxResponse {
		return nil, reject("registration of %d bytes", len(raw))
	}
	pcc, err := protocol.ParseCredentialCreationResponseBytes(raw)
	if err != nil {
		return nil, reject("parsing the registration: %v", detail(err))
	}
	if _, err := pcc.Verify(b64(challenge), rp.ID, rp.Origins, nil, nil, protocol.TopOriginExplicitVerificationMode,
		false, true, true, nil, algorithms, protocol.AttestationPolicy{}, protocol.SignaturePolicy{}); err != nil {
		return nil, reject("registration: %v", detail(err))
	}
	ad := pcc.Response.AttestationObject.AuthData
	return &Registered{
		ID: bytes.Clone(ad.AttData.CredentialID), PublicKey: bytes.Clone(ad.AttData.CredentialPublicKey),
		SignCount: ad.Counter, AAGUID: bytes.Clone(ad.AttData.AAGUID),
	}, nil
}

// RequestOptions is the JSON (PublicKeyCredentialRequestOptionsJSON) for
// PublicKeyCredential.parseRequestOptionsFromJSON: the user's passkeys,
// user verification required.
func (rp RP) RequestOptions(challenge []byte, allow [][]byte, timeoutMS int) map[string]any {
	ac := make([]map[string]any, 0, len(allow))
	for _, id := range allow {
		ac = append(ac, map[string]any{"type": "public-key", "id": b64(id)})
	}
	return map[string]any{
		"challenge": b64(challenge), "rpId": rp.ID, "allowCredentials": ac,
		"userVerification": "required", "timeout": timeoutMS,
	}
}

// Payment is what a Secure Payment Confirmation assertion must say the
// browser showed: the `payment` member of its clientDataJSON, member for
// member.
type Payment struct {
	RPID        string     `json:"rpId"`
	TopOrigin   string     `json:"topOrigin"`
	PayeeName   string     `json:"payeeName,omitempty"`
	PayeeOrigin string     `json:"payeeOrigin,omitempty"`
	Total       Amount     `json:"total"`
	Instrument  Instrument `json:"instrument"`
	// PaymentEntitiesLogos are the network and issuer logos the page asked
	// the dialog to show; the gateway asks for none, and Chromium writes
	// the member empty.
	PaymentEntitiesLogos []json.RawMessage `json:"paymentEntitiesLogos,omitempty"`
}

// Amount is a PaymentCurrencyAmount: ISO 4217 currency and the value as
// the page passed it ("15000").
type Amount struct {
	Currency string `json:"currency"`
	Value    string `json:"value"`
}

// Instrument is what SPC shows as the means of payment.
type Instrument struct {
	DisplayName string `json:"displayName"`
	Icon        string `json:"icon"`
}

// Expected is what an assertion must have been made for.
type Expected struct {
	// Challenge is the challenge the page was given (see Challenge).
	Challenge []byte
	// Payment, when set, asks for a Secure Payment Confirmation
	// assertion (type payment.get) naming exactly this; nil asks for a
	// plain WebAuthn one (type webauthn.get).
	Payment *Payment
}

// Asserted is a verified assertion: which credential signed, and its
// counter (the caller checks that it grows, in its store).
type Asserted struct {
	CredentialID []byte
	SignCount    uint32
}

// Parse reads an assertion response (the credential's toJSON()), bounded.
func Parse(raw []byte) (*protocol.ParsedCredentialAssertionData, error) {
	if len(raw) > MaxResponse {
		return nil, reject("assertion of %d bytes", len(raw))
	}
	p, err := protocol.ParseCredentialRequestResponseBytes(raw)
	if err != nil {
		return nil, reject("parsing the assertion: %v", detail(err))
	}
	return p, nil
}

// VerifyAssertion checks a parsed assertion made with publicKey (COSE, as
// stored at registration): its type (webauthn.get, or payment.get with
// its payment member equal to exp.Payment), the challenge, an origin of
// rp and no cross-origin frame, rpIdHash, user presence and verification,
// and the signature over the raw authenticator data and clientDataJSON.
//
// go-webauthn verifies webauthn.get ceremonies only. For payment.get the
// raw clientDataJSON's type and payment member are checked here first;
// the parsed copy's type is then set to webauthn.get so the library runs
// every other check — the signature is over the raw bytes, which still
// say payment.get, so nothing signed is changed.
func (rp RP) VerifyAssertion(p *protocol.ParsedCredentialAssertionData, publicKey []byte, exp Expected) (*Asserted, error) {
	var raw struct {
		Type    string          `json:"type"`
		Payment json.RawMessage `json:"payment"`
	}
	if err := json.Unmarshal(p.Raw.AssertionResponse.ClientDataJSON, &raw); err != nil {
		return nil, reject("clientDataJSON: %v", err)
	}
	switch {
	case exp.Payment == nil && raw.Type != string(protocol.AssertCeremony):
		return nil, reject("clientDataJSON type %q, want webauthn.get", raw.Type)
	case exp.Payment == nil && raw.Payment != nil:
		return nil, reject("a payment member in a webauthn.get assertion")
	case exp.Payment != nil:
		if raw.Type != "payment.get" {
			return nil, reject("clientDataJSON type %q, want payment.get", raw.Type)
		}
		if err := checkPayment(raw.Payment, exp.Payment); err != nil {
			return nil, err
		}
		p.Response.CollectedClientData.Type = protocol.AssertCeremony
	}
	if err := p.Verify(b64(exp.Challenge), rp.ID, "", rp.Origins, nil, nil, protocol.TopOriginExplicitVerificationMode,
		false, true, true, publicKey, protocol.SignaturePolicy{}); err != nil {
		return nil, reject("%v", detail(err))
	}
	return &Asserted{CredentialID: bytes.Clone(p.RawID), SignCount: p.Response.AuthenticatorData.Counter}, nil
}

// checkPayment compares the payment member with what the held request
// says, every member: a member the gateway did not expect, or one that
// differs by a byte, refuses the assertion.
func checkPayment(raw json.RawMessage, want *Payment) error {
	if raw == nil {
		return reject("payment.get without a payment member")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var got Payment
	if err := dec.Decode(&got); err != nil {
		return reject("payment member: %v", err)
	}
	switch {
	case got.RPID != want.RPID:
		return reject("payment rpId %q, want %q", got.RPID, want.RPID)
	case got.TopOrigin != want.TopOrigin:
		return reject("payment topOrigin %q, want %q", got.TopOrigin, want.TopOrigin)
	case got.PayeeName != want.PayeeName || got.PayeeOrigin != want.PayeeOrigin:
		return reject("payment payee %q %q, want %q %q", got.PayeeName, got.PayeeOrigin, want.PayeeName, want.PayeeOrigin)
	case got.Total != want.Total:
		return reject("payment total %s %s, want %s %s", got.Total.Value, got.Total.Currency, want.Total.Value, want.Total.Currency)
	case got.Instrument != want.Instrument:
		return reject("payment instrument %q, want %q", got.Instrument.DisplayName, want.Instrument.DisplayName)
	case len(got.PaymentEntitiesLogos) != len(want.PaymentEntitiesLogos):
		return reject("payment with %d entity logos, want %d", len(got.PaymentEntitiesLogos), len(want.PaymentEntitiesLogos))
	}
	return nil
}

// detail is go-webauthn's error with its details (which check failed).
func detail(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Details + ": " + pe.DevInfo
	}
	return err.Error()
}
