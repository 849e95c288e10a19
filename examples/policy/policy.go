// Package examplepolicy embeds the example policy for the demo bank, so the
// demo and the end-to-end tests run exactly the file a bank would start from.
package examplepolicy

import _ "embed"

// Bank is examples/policy/bank.yaml.
//
//go:embed bank.yaml
var Bank []byte
