//go:build race

package apns_test

// raceEnabled scales the burst test down under the race detector, which
// slows the in-process TLS client and server several-fold.
const raceEnabled = true
