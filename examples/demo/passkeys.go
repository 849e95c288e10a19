package main

import (
	"bytes"
	"fmt"
)

// passkeyLogin makes the example policy's login rule passkey_or_push: a
// push (code transfer) until alice registers a passkey, the passkey after.
// The transfer rule stays as it is (a held request the phone approves).
func passkeyLogin(policy []byte) ([]byte, error) {
	const line = "    mode: interstitial         # a waiting page with a 6-digit code (code_digits)\n"
	if !bytes.Contains(policy, []byte(line)) {
		return nil, fmt.Errorf("the example policy's login rule no longer has the line %q", line)
	}
	return bytes.Replace(policy, []byte(line), []byte(line+"    method: passkey_or_push    # a passkey where she has one (docs/passkeys.md)\n"), 1), nil
}

// passkeyBlock is the handler's passkeys block for a gateway on port: a
// passkey needs a domain name, so the relying party is localhost.
func passkeyBlock(port string) string {
	return fmt.Sprintf("\t\tpasskeys {\n\t\t\trp_id localhost\n\t\t\torigins http://localhost:%s\n\t\t}\n", port)
}

// passkeyOffer is what the demo tells about passkeys.
func passkeyOffer(port string) string {
	return fmt.Sprintf(`
Passkeys (phishing-resistant, docs/passkeys.md): open http://localhost:%[1]s/
(a passkey needs a name, not an address), log in as alice and approve on the
phone; then add a passkey at http://localhost:%[1]s/onepush/passkeys (the phone
approves that too, with the code the page shows). Her next login asks only for
the passkey.
`, port)
}
