// Package caddymodule adapts the onepush engine to Caddy: the onepush app,
// the onepush gate and device API handlers, their Caddyfile syntax.
//
// It holds no business logic; policy and pushauth do.
package caddymodule
