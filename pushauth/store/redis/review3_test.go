package redis

import (
	"errors"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// TestPasskeyRevocationWaitsForReplicas: revoking a passkey (a stolen
// laptop, a clone) is a revocation, and the threat model promises that a
// revocation is acknowledged by min_replicas before it counts; otherwise a
// failover right after brings the revoked passkey back. Review 3: the
// deletion was a plain HDEL that succeeded with the replica frozen.
func TestPasskeyRevocationWaitsForReplicas(t *testing.T) {
	primary, replica := primaryWithReplica(t)
	s := openAcked(t, primary.Addr(), uniquePrefix(), 1)
	ctx := ctxT(t)
	p := &pushauth.Passkey{ID: []byte("stolen-laptop"), UserKey: "1001/alice", PublicKey: []byte{0xa5, 1, 2, 3, 0x26}, CreatedAt: time.Now()}
	if err := s.AddPasskey(ctx, p); err != nil {
		t.Fatal(err)
	}
	replica.Pause()
	defer replica.Resume()
	if err := s.DeletePasskey(ctx, p.UserKey, p.ID); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("revoking a passkey with the replica frozen = %v, want ErrNotReplicated", err)
	}
	replica.Resume()
	// Already deleted on the primary: a retry says so; no passkey is left.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.DeletePasskey(ctx, p.UserKey, p.ID)
		if errors.Is(err, pushauth.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retrying the revocation with the replica back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if list, err := s.Passkeys(ctx, p.UserKey); err != nil || len(list) != 0 {
		t.Fatalf("passkeys after the revocation: %v %v", list, err)
	}
}
