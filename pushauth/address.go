package pushauth

import (
	"net"

	"github.com/onepush/onepush/pushauth/internal/limit"
)

// ClientAddr is the host of a connection's remote address ("ip:port"), the
// client address wherever no trusted proxy speaks for the client.
func ClientAddr(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	return host
}

// AddressKey is what rate limits count a client address as: an IPv4
// address, or the /64 of an IPv6 one (one host is given a whole /64).
func AddressKey(ip string) string { return limit.AddressKey(ip) }
