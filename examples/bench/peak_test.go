package main

import (
	"testing"
	"time"

	"github.com/onepush/onepush/internal/caddyrig"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// TestPeakShort is the peak scenario in about 30 seconds of arrivals: a
// small rate on two instances and one Redis, instance A stopped and
// started again in the middle, and the checks of the full run: nothing
// lost, nothing twice, nothing unapproved, every customer answered.
func TestPeakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Caddy twice, Redis and the legacy bank")
	}
	bin, err := caddyrig.Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultPeak()
	cfg.Caddy, cfg.Redis = bin, redistest.Start(t)
	cfg.Rate, cfg.Ramp, cfg.Hold, cfg.Down = 8, 5*time.Second, 15*time.Second, 5*time.Second
	cfg.Clients, cfg.QuietN, cfg.Timeout, cfg.Grace = 2, 5, 10*time.Second, 3*time.Second
	cfg.Mix.thinkMin, cfg.Mix.thinkMax = 500*time.Millisecond, 3*time.Second
	cfg.Fail503 = 0
	rep := &peakReport{}
	if err := runPeak(cfg, rep); err != nil {
		t.Fatalf("peak run: %v", err)
	}
	c := rep.Check
	for _, p := range c.Problems {
		t.Log(p)
	}
	t.Logf("requests %d, executed %d, approvals %d, classes %v, restart %+v", c.Requests, c.Executed, c.Approvals, c.Classes, rep.Restart)
	if c.Lost != 0 || c.Duplicated != 0 || c.Unapproved != 0 || c.Unanswered != 0 || len(c.Gaps) != 0 {
		t.Errorf("lost %d, duplicated %d, unapproved %d, unanswered %d, bank log gaps %v", c.Lost, c.Duplicated, c.Unapproved, c.Unanswered, c.Gaps)
	}
	// Not vacuous: the run moved money, and the restart happened under load.
	if c.Executed < 30 || c.Approvals < 30 {
		t.Errorf("only %d requests executed and %d approvals: the run did not carry load", c.Executed, c.Approvals)
	}
	if rc := rep.Restart; rc == nil || rc.StopAt.IsZero() || rc.ReadyMs == 0 {
		t.Errorf("instance A was not restarted: %+v", rep.Restart)
	} else {
		if rc.FirstOKMs == 0 {
			t.Errorf("no request succeeded through instance A after its restart")
		}
		// Only A's clients pay for A's restart.
		if len(rc.AffectedB) != 0 {
			t.Errorf("instance B's clients were refused or cut off while A restarted: %v", rc.AffectedB)
		}
	}
}
