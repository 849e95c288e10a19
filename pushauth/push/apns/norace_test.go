//go:build !race

package apns_test

const raceEnabled = false
