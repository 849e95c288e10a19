package caddymodule

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The placeholders the gate sets on a request a rule matched, for access
// logs and handle_errors: {onepush.rule}, {onepush.user} (the user the
// request names), {onepush.challenge_id}, {onepush.outcome} (approved,
// password_only, dry_run, or the page of a refusal: denied, expired,
// locked, no_session, …) and, once the request goes on to the bank for
// that user, {http.auth.user.id} (Caddy's access log writes it as
// user_id), as an authentication handler sets it.
const (
	userPlaceholder    = "http.auth.user.id"
	refusedPlaceholder = "onepush.refused_status" // a refusal left to handle_errors
)

// note sets the placeholder of what the gate learnt about r.
func note(r *http.Request, key, value string) {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return
	}
	if key == "auth_user" {
		repl.Set(userPlaceholder, value)
		return
	}
	repl.Set("onepush."+key, value)
}

// takeRefusal leaves a refusal to the server's handle_errors routes when
// it has some; without them the gate's own page answers, as before.
func (h *Handler) takeRefusal(r *http.Request, status int) bool {
	if !h.hasErrorRoutes(r) {
		return false
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set(refusedPlaceholder, status)
		return true
	}
	return false
}

// hasErrorRoutes reports whether the server this handler serves in has
// handle_errors routes; it is read once, so a request no rule matches pays
// one atomic load.
func (h *Handler) hasErrorRoutes(r *http.Request) bool {
	switch h.errorRoutes.Load() {
	case 1:
		return false
	case 2:
		return true
	}
	srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	has := ok && srv.Errors != nil && len(srv.Errors.Routes) > 0
	if has {
		h.errorRoutes.Store(2)
	} else {
		h.errorRoutes.Store(1)
	}
	return has
}

// refusal is the error of a refusal the gate left to handle_errors, nil
// when there was none.
func refusal(r *http.Request) error {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return nil
	}
	status, ok := repl.Get(refusedPlaceholder)
	if !ok {
		return nil
	}
	outcome, _ := repl.GetString("onepush.outcome")
	return caddyhttp.Error(status.(int), errors.New("onepush: refused: "+outcome))
}
