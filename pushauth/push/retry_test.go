package push

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

var errTry = errors.New("try again")

func TestDoStopsOnSuccessAndOnFinalErrors(t *testing.T) {
	p := RetryPolicy{Base: time.Millisecond}
	calls := 0
	err := p.Do(context.Background(), func(a int) (bool, error) {
		calls++
		if a < 3 {
			return true, errTry
		}
		return false, nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("success on attempt 3: err %v calls %d", err, calls)
	}
	calls = 0
	final := errors.New("final")
	err = p.Do(context.Background(), func(int) (bool, error) { calls++; return false, final })
	if !errors.Is(err, final) || calls != 1 {
		t.Fatalf("final error: err %v calls %d", err, calls)
	}
}

func TestDoUsesUpAttempts(t *testing.T) {
	for _, tc := range []struct{ attempts, want int }{{0, DefaultAttempts}, {1, 1}, {3, 3}} {
		calls := 0
		err := RetryPolicy{Attempts: tc.attempts, Base: time.Millisecond}.Do(context.Background(),
			func(int) (bool, error) { calls++; return true, errTry })
		if !errors.Is(err, errTry) || calls != tc.want {
			t.Errorf("Attempts %d: calls %d err %v, want %d calls", tc.attempts, calls, err, tc.want)
		}
	}
}

func TestDoNeverWaitsPastTheDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	dl, _ := ctx.Deadline()
	var at []time.Time
	err := RetryPolicy{Attempts: 50, Base: 100 * time.Millisecond, Max: 100 * time.Millisecond}.Do(ctx,
		func(int) (bool, error) { at = append(at, time.Now()); return true, errTry })
	end := time.Now()
	if !errors.Is(err, errTry) {
		t.Fatalf("err = %v, want the last attempt's error", err)
	}
	// Do decides from the clock and never sleeps past the deadline; a
	// loaded machine may still wake it a little late.
	if late := end.Sub(dl); late > 100*time.Millisecond {
		t.Errorf("Do returned %v after the deadline", late)
	}
	if len(at) < 2 || len(at) > 5 {
		t.Errorf("%d attempts in 250ms with ≥50ms backoff", len(at))
	}
	for _, a := range at {
		if a.After(dl.Add(10 * time.Millisecond)) {
			t.Errorf("attempt %v past the deadline", a.Sub(dl))
		}
	}
}

func TestDoReturnsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	err := RetryPolicy{Attempts: 10, Base: time.Second, Max: time.Second}.Do(ctx,
		func(int) (bool, error) { return true, errTry })
	if !errors.Is(err, errTry) || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
	calls := 0
	err = RetryPolicy{}.Do(ctx, func(int) (bool, error) { calls++; return false, nil })
	if !errors.Is(err, context.Canceled) || calls != 0 {
		t.Fatalf("Do on a done ctx: err %v, %d calls", err, calls)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	p := RetryPolicy{}.withDefaults()
	for n, full := range map[int]time.Duration{1: 200 * time.Millisecond, 2: 400 * time.Millisecond, 3: 800 * time.Millisecond, 10: 5 * time.Second, 60: 5 * time.Second} {
		for range 50 {
			if b := p.backoff(n); b < full/2 || b > full {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", n, b, full/2, full)
			}
		}
	}
}

func TestCollapseID(t *testing.T) {
	a, b := CollapseID("user-1"), CollapseID("user-2")
	if len(a) != 32 || a == b || a != CollapseID("user-1") || strings.Contains(a, "user") {
		t.Fatalf("CollapseID: %q %q", a, b)
	}
}
