// Command caddy is Caddy with its standard modules and onepush built in:
// the same binary xcaddy would build with --with github.com/onepush/onepush.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/onepush/onepush/caddymodule"
)

func main() {
	caddycmd.Main()
}
