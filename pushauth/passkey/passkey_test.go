package passkey_test

import (
	"errors"
	"testing"

	"github.com/onepush/onepush/pushauth/passkey"
	"github.com/onepush/onepush/pushauth/passkey/passkeytest"
)

var rp = passkey.RP{ID: "bank.localhost", Name: "Bank", Origins: []string{"http://bank.localhost:8080"}}

const origin = "http://bank.localhost:8080"

func registered(t *testing.T) (*passkeytest.Authenticator, []byte) {
	t.Helper()
	a, err := passkeytest.New(rp.ID)
	if err != nil {
		t.Fatal(err)
	}
	ch := passkey.Challenge(`{"kind":"passkey.add"}`, []byte("n0"))
	reg, err := rp.VerifyRegistration(a.Register(ch, origin), ch)
	if err != nil {
		t.Fatalf("registration: %v", err)
	}
	if string(reg.ID) != string(a.ID) {
		t.Fatalf("registered id %x, want %x", reg.ID, a.ID)
	}
	return a, reg.PublicKey
}

func TestRegistration(t *testing.T) {
	a, _ := registered(t)
	ch := passkey.Challenge("ctx", []byte("n"))
	for name, raw := range map[string][]byte{
		"another challenge": a.Register(passkey.Challenge("ctx", []byte("m")), origin),
		"another origin":    a.Register(ch, "http://bank-login.localhost:8080"),
	} {
		if _, err := rp.VerifyRegistration(raw, ch); !errors.Is(err, passkey.ErrRejected) {
			t.Errorf("%s: %v, want rejected", name, err)
		}
	}
	a.Flags = passkeytest.FlagUP // no user verification
	if _, err := rp.VerifyRegistration(a.Register(ch, origin), ch); !errors.Is(err, passkey.ErrRejected) {
		t.Errorf("without user verification: %v, want rejected", err)
	}
}

func TestAssertion(t *testing.T) {
	a, pub := registered(t)
	ch := passkey.Challenge(`{"challenge_id":"c1"}`, []byte("nonce"))
	verify := func(raw []byte, exp passkey.Expected) error {
		p, err := passkey.Parse(raw)
		if err != nil {
			return err
		}
		_, err = rp.VerifyAssertion(p, pub, exp)
		return err
	}
	good := passkeytest.ClientData("webauthn.get", ch, origin, nil)
	if err := verify(a.Assert(good, nil), passkey.Expected{Challenge: ch}); err != nil {
		t.Fatalf("a good assertion: %v", err)
	}
	other := passkey.Challenge(`{"challenge_id":"c2"}`, []byte("nonce"))
	cases := map[string][]byte{
		"wrong origin":      a.Assert(passkeytest.ClientData("webauthn.get", ch, "http://bank.evil.localhost:8080", nil), nil),
		"wrong rpIdHash":    a.Assert(good, make([]byte, 32)),
		"cross-origin top":  a.Assert(passkeytest.ClientData("webauthn.get", ch, origin, map[string]any{"crossOrigin": true, "topOrigin": "http://evil.localhost"}), nil),
		"another challenge": a.Assert(passkeytest.ClientData("webauthn.get", other, origin, nil), nil),
		"create type":       a.Assert(passkeytest.ClientData("webauthn.create", ch, origin, nil), nil),
		"payment type":      a.Assert(passkeytest.ClientData("payment.get", ch, origin, nil), nil),
	}
	for name, raw := range cases {
		if err := verify(raw, passkey.Expected{Challenge: ch}); !errors.Is(err, passkey.ErrRejected) {
			t.Errorf("%s: %v, want rejected", name, err)
		}
	}
	// A signature by another key.
	b, _ := passkeytest.New(rp.ID)
	b.ID = a.ID
	if err := verify(b.Assert(good, nil), passkey.Expected{Challenge: ch}); !errors.Is(err, passkey.ErrRejected) {
		t.Errorf("another key: %v, want rejected", err)
	}
	a.Flags = passkeytest.FlagUP
	if err := verify(a.Assert(good, nil), passkey.Expected{Challenge: ch}); !errors.Is(err, passkey.ErrRejected) {
		t.Errorf("no user verification: %v, want rejected", err)
	}
}

func TestPaymentAssertion(t *testing.T) {
	a, pub := registered(t)
	ch := passkey.Challenge(`{"challenge_id":"tx"}`, []byte("nonce"))
	want := &passkey.Payment{RPID: rp.ID, TopOrigin: origin, PayeeName: "1234567",
		Total: passkey.Amount{Currency: "JPY", Value: "15000"}, Instrument: passkey.Instrument{DisplayName: "振込", Icon: "data:x"}}
	payment := func(edit func(m map[string]any)) []byte {
		m := map[string]any{"rpId": want.RPID, "topOrigin": want.TopOrigin, "payeeName": want.PayeeName,
			"total":      map[string]any{"currency": "JPY", "value": "15000"},
			"instrument": map[string]any{"displayName": want.Instrument.DisplayName, "icon": want.Instrument.Icon}}
		if edit != nil {
			edit(m)
		}
		return a.Assert(passkeytest.ClientData("payment.get", ch, origin, map[string]any{"payment": m}), nil)
	}
	verify := func(raw []byte, exp passkey.Expected) error {
		p, err := passkey.Parse(raw)
		if err != nil {
			return err
		}
		_, err = rp.VerifyAssertion(p, pub, exp)
		return err
	}
	exp := passkey.Expected{Challenge: ch, Payment: want}
	if err := verify(payment(nil), exp); err != nil {
		t.Fatalf("a good SPC assertion: %v", err)
	}
	// As Chromium writes it: an empty list of entity logos.
	if err := verify(payment(func(m map[string]any) { m["paymentEntitiesLogos"] = []any{} }), exp); err != nil {
		t.Fatalf("a good SPC assertion with no logos: %v", err)
	}
	cases := map[string]func(m map[string]any){
		"another amount":    func(m map[string]any) { m["total"] = map[string]any{"currency": "JPY", "value": "150000"} },
		"another currency":  func(m map[string]any) { m["total"] = map[string]any{"currency": "USD", "value": "15000"} },
		"another payee":     func(m map[string]any) { m["payeeName"] = "7654321" },
		"a payee origin":    func(m map[string]any) { m["payeeOrigin"] = "https://evil.example" },
		"another topOrigin": func(m map[string]any) { m["topOrigin"] = "http://evil.localhost:8080" },
		"another rpId":      func(m map[string]any) { m["rpId"] = "evil.localhost" },
		"another instrument": func(m map[string]any) {
			m["instrument"] = map[string]any{"displayName": "Other", "icon": want.Instrument.Icon}
		},
		"an unknown member": func(m map[string]any) { m["extra"] = 1 },
		"a logo": func(m map[string]any) {
			m["paymentEntitiesLogos"] = []any{map[string]any{"url": "data:x", "label": "Visa"}}
		},
	}
	for name, edit := range cases {
		if err := verify(payment(edit), exp); !errors.Is(err, passkey.ErrRejected) {
			t.Errorf("%s: %v, want rejected", name, err)
		}
	}
	// A plain webauthn.get where SPC was asked for, and the reverse.
	if err := verify(a.Assert(passkeytest.ClientData("webauthn.get", ch, origin, nil), nil), exp); !errors.Is(err, passkey.ErrRejected) {
		t.Errorf("webauthn.get for a payment: %v", err)
	}
	if err := verify(payment(nil), passkey.Expected{Challenge: ch}); !errors.Is(err, passkey.ErrRejected) {
		t.Errorf("payment.get for a login: %v", err)
	}
}
