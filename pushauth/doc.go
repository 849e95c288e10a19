// Package pushauth is the onepush core: challenges and the requests waiting
// on them, decisions, device tokens, user lifecycle, limits, audit and the outbox.
//
// It has no Caddy, no HTML and no HTTP handler: the gate and httpapi
// packages serve browsers and devices through its exported API.
package pushauth
