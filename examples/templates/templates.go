// Package exampletemplates embeds the demo bank's page templates, so the
// demo runs exactly the files a bank would start from.
package exampletemplates

import _ "embed"

// WaitBranded is examples/templates/wait-branded.html: the waiting page
// with the demo bank's header, logo and colours (blocks only).
//
//go:embed wait-branded.html
var WaitBranded []byte
