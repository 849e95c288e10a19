package main

import (
	"os"
	"testing"
)

// TestMain lets the test binary play the bench's roles, as the bench's own
// binary does: the peak test starts the bank, the phones and the load
// clients as child processes of itself.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "__role" {
		runRole(os.Args[2], os.Args[3:])
		return
	}
	os.Exit(m.Run())
}
