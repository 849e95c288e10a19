package storetest_test

import (
	"testing"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/store/memory"
	"github.com/onepush/onepush/pushauth/storetest"
)

func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) pushauth.Store { return memory.New(nil) })
}
