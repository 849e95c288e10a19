package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// The PushCounter contract: pushes asked at once are each counted once
// (no more than the cap get through, however many instances ask), a
// refusal counts nothing, the streak is kept on the user's record beside
// the rest of it, an approval ends it and makes its address the user's
// own, whose pushes are not counted.
func testPushStreak(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	at := time.Unix(time.Now().Unix(), 0).UTC()
	l := pushauth.PushStreakLimits{Free: 10, Cap: 10, Backoff: 30 * time.Second}
	if _, err := s.TakePush(ctx, uid("nobody"), "192.0.2.1", l, at); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("TakePush for an unknown user: %v, want ErrNotFound", err)
	}
	key := uid("push-user")
	cred := uid("cred")
	if err := s.PutUser(ctx, &pushauth.User{Key: key, CredentialID: cred, State: pushauth.UserActive, Failures: 2}); err != nil {
		t.Fatal(err)
	}
	allowed := 0
	for _, wait := range atOnce(t, 25, "TakePush", func() (time.Duration, error) {
		return s.TakePush(ctx, key, "198.51.100.7", l, at)
	}) {
		if wait == 0 {
			allowed++
		} else if wait != 24*time.Hour {
			t.Errorf("a refused push waits %s, want 24h (the cap, from the first push)", wait)
		}
	}
	if allowed != 10 {
		t.Fatalf("25 pushes at once under a cap of 10: %d allowed", allowed)
	}
	u, err := s.GetUser(ctx, key)
	if err != nil || u.PushCount != 10 || u.PushSince != at.Unix() || u.PushLast != at.Unix() ||
		u.Failures != 2 || u.CredentialID != cred {
		t.Fatalf("the user after the pushes: %+v %v", u, err)
	}
	// Backoff: after Free pushes the next waits Backoff from the last.
	l2 := pushauth.PushStreakLimits{Free: 10, Cap: 20, Backoff: 30 * time.Second}
	if wait, err := s.TakePush(ctx, key, "198.51.100.7", l2, at.Add(10*time.Second)); err != nil || wait != 20*time.Second {
		t.Fatalf("push 11, 10s after the 10th: wait %s %v, want 20s", wait, err)
	}
	if err := s.EndPushStreak(ctx, key, "192.0.2.1", at); err != nil {
		t.Fatal(err)
	}
	u, err = s.GetUser(ctx, key)
	if err != nil || u.PushCount != 0 || u.PushHome != "192.0.2.1" || u.Failures != 2 {
		t.Fatalf("the user after an approval: %+v %v", u, err)
	}
	for range 12 {
		if wait, err := s.TakePush(ctx, key, "192.0.2.1", l, at); err != nil || wait != 0 {
			t.Fatalf("push from her own address: wait %s %v, want allowed", wait, err)
		}
	}
	if u, err := s.GetUser(ctx, key); err != nil || u.PushCount != 0 {
		t.Fatalf("pushes from her own address were counted: %+v %v", u, err)
	}
	if wait, err := s.TakePush(ctx, key, "198.51.100.7", l, at); err != nil || wait != 0 {
		t.Fatalf("push from elsewhere after the approval: wait %s %v, want allowed", wait, err)
	}
	if err := s.EndPushStreak(ctx, uid("nobody"), "192.0.2.1", at); err != nil {
		t.Fatalf("EndPushStreak for an unknown user: %v", err)
	}
}
