package caddymodule

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// terminalHandlers answer every request they see and never call the next
// handler: a gate after one of them in the same chain sees nothing.
var terminalHandlers = map[caddy.ModuleID]string{
	"http.handlers.reverse_proxy":   "reverse_proxy",
	"http.handlers.static_response": "respond",
	"http.handlers.file_server":     "file_server",
	"http.handlers.error":           "error",
}

// checkPlacement refuses a config in which an onepush gate can never run
// because a handler that answers every request comes before it in the
// same routes, as in `route { reverse_proxy …; onepush … }` (inside route,
// Caddy keeps the order as written): such a gate would validate and
// protect nothing.
func checkPlacement(ctx caddy.Context) error {
	app, err := ctx.AppIfConfigured("http")
	if err != nil {
		return nil // no HTTP app: no gate to place
	}
	httpApp, ok := app.(*caddyhttp.App)
	if !ok {
		return nil
	}
	for name, srv := range httpApp.Servers {
		if err := checkRoutes(name, srv.Routes); err != nil {
			return err
		}
	}
	return nil
}

// checkRoutes walks one list of routes in order, and every subroute.
func checkRoutes(server string, routes caddyhttp.RouteList) error {
	terminal := ""
	for _, r := range routes {
		for _, h := range r.Handlers {
			if _, ok := h.(*Handler); ok && terminal != "" {
				return fmt.Errorf("onepush: server %s: onepush comes after %s in the same routes (as in route { %s …; onepush … }), so it never sees a request and protects nothing: put onepush first inside the route block, or outside it, where Caddy orders it before handle and reverse_proxy",
					server, terminal, terminal)
			}
			if sub, ok := h.(*caddyhttp.Subroute); ok {
				if err := checkRoutes(server, sub.Routes); err != nil {
					return err
				}
			}
			// Only a handler every request reaches ends the chain (once
			// provisioned, a route keeps its matchers in MatcherSets).
			if m, ok := h.(caddy.Module); ok && len(r.MatcherSets) == 0 && len(r.MatcherSetsRaw) == 0 && terminal == "" {
				terminal = terminalHandlers[m.CaddyModule().ID]
			}
		}
	}
	return nil
}
