// Package examplepolicy embeds the example policy for the demo bank, so the
// demo and the end-to-end tests run exactly the file a bank would start from.
package examplepolicy

import _ "embed"

// Bank is examples/policy/bank.yaml.
//
//go:embed bank.yaml
var Bank []byte

// FX is examples/policy/fx.yaml: the FX edition, another site sharing the
// store (one phone for both services).
//
//go:embed fx.yaml
var FX []byte

// Interstitial is examples/policy/interstitial.yaml: bank.yaml with every
// transfer on a waiting page with code transfer.
//
//go:embed interstitial.yaml
var Interstitial []byte
