// Package pushauth is the onepush engine: challenges and the requests waiting on
// them, credentials and bindings, the device protocol, push senders and stores.
//
// It has no Caddy import; the caddymodule package adapts it to Caddy.
package pushauth
