package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/onepush/onepush/pushauth"
)

func adminRequest(user string, at time.Time) *pushauth.AdminRequest {
	return &pushauth.AdminRequest{ID: uid("req"), AdminChange: pushauth.AdminChange{Op: pushauth.OpBind, User: user, CredentialID: uid("cred")},
		RequestedBy: "ops1", RequestedAt: at, ExpiresAt: at.Add(time.Hour), Status: pushauth.AdminRequestPending}
}

// testAdminRequests: a request is stored as given, listed newest first,
// and moves from one status to the next only from the status it had.
func testAdminRequests(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	now := time.Now().Truncate(time.Millisecond)
	older, newer := adminRequest(uid("u"), now.Add(-time.Minute)), adminRequest(uid("u"), now)
	for _, r := range []*pushauth.AdminRequest{older, newer} {
		if err := s.CreateAdminRequest(ctx, r); err != nil {
			t.Fatalf("CreateAdminRequest: %v", err)
		}
	}
	if err := s.CreateAdminRequest(ctx, newer); err == nil {
		t.Fatal("CreateAdminRequest accepted an id that exists")
	}
	got, err := s.GetAdminRequest(ctx, older.ID)
	if err != nil || got.User != older.User || got.CredentialID != older.CredentialID || got.Status != pushauth.AdminRequestPending || !got.ExpiresAt.Equal(older.ExpiresAt) {
		t.Fatalf("GetAdminRequest = %+v, %v; want %+v", got, err, older)
	}
	if _, err := s.GetAdminRequest(ctx, uid("req")); !errors.Is(err, pushauth.ErrNotFound) {
		t.Fatalf("GetAdminRequest(unknown) = %v, want ErrNotFound", err)
	}
	list, err := s.ListAdminRequests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pos []string
	for _, r := range list {
		if r.ID == older.ID || r.ID == newer.ID {
			pos = append(pos, r.ID)
		}
	}
	if len(pos) != 2 || pos[0] != newer.ID {
		t.Fatalf("ListAdminRequests order %v, want newest (%s) first", pos, newer.ID)
	}
	done := *older
	done.Status, done.DecidedBy = pushauth.AdminRequestDone, "sup1"
	if _, err := s.UpdateAdminRequest(ctx, &done, pushauth.AdminRequestPending); err != nil {
		t.Fatalf("UpdateAdminRequest pending→done: %v", err)
	}
	again := *older
	again.Status = pushauth.AdminRequestRejected
	cur, err := s.UpdateAdminRequest(ctx, &again, pushauth.AdminRequestPending)
	if !errors.Is(err, pushauth.ErrConflict) || cur == nil || cur.Status != pushauth.AdminRequestDone || cur.DecidedBy != "sup1" {
		t.Fatalf("second decision = %+v, %v; want ErrConflict and the done record", cur, err)
	}
}

// testAdminRequestRace: of many instances deciding one request at once,
// exactly one does (an approved change runs once).
func testAdminRequestRace(t *testing.T, s pushauth.Store) {
	ctx := ctxT(t)
	r := adminRequest(uid("u"), time.Now())
	if err := s.CreateAdminRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	results := atOnce(t, 16, "UpdateAdminRequest", func() (bool, error) {
		next := *r
		next.Status = pushauth.AdminRequestDone
		_, err := s.UpdateAdminRequest(ctx, &next, pushauth.AdminRequestPending)
		if errors.Is(err, pushauth.ErrConflict) {
			return false, nil
		}
		return err == nil, err
	})
	won := 0
	for _, ok := range results {
		if ok {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("%d of 16 concurrent decisions won, want exactly 1", won)
	}
}
