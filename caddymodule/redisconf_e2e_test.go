package caddymodule_test

import "strings"

// testEncryptionKey seals what the gateways of the tests keep in Redis
// (base64 of 32 bytes, as `openssl rand -base64 32` prints).
const testEncryptionKey = "b25lcHVzaC10ZXN0LWtleS0zMi1ieXRlcy1sb25nISE="

// redisGlobal is the global onepush options of a gateway on Redis: the
// store block (addresses, then any extra lines in it) and the key.
func redisGlobal(addresses string, storeLines ...string) string {
	var b strings.Builder
	b.WriteString("\t\tstore redis {\n\t\t\taddresses " + addresses + "\n")
	for _, l := range storeLines {
		b.WriteString("\t\t\t" + l + "\n")
	}
	b.WriteString("\t\t}\n\t\tencryption_key " + testEncryptionKey)
	return b.String()
}
