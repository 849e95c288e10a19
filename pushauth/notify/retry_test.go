package notify

import (
	"testing"
	"time"
)

func TestRetryDelayDoublesToTenMinutes(t *testing.T) {
	prev := time.Duration(0)
	for attempt := 1; attempt <= 30; attempt++ {
		d := retryDelay(attempt)
		base := min(time.Second<<min(attempt-1, 20), 10*time.Minute)
		if d < base || d > base+base/5 {
			t.Fatalf("retryDelay(%d) = %s, want %s plus at most a fifth", attempt, d, base)
		}
		if attempt <= 10 && d <= prev/2 {
			t.Fatalf("retryDelay(%d) = %s does not grow from %s", attempt, d, prev)
		}
		prev = d
	}
}
