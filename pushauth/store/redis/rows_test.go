package redis

import (
	"reflect"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/store/redis/redistest"
)

// TestBatchRowsAreSealedInRedis: a batch challenge's rows (customer data:
// payees, names, amounts) come back whole through the store, and are in
// Redis and on the channel only sealed, while the count, total and digest
// (no row in them) stay readable for the phone's context.
func TestBatchRowsAreSealedInRedis(t *testing.T) {
	addr := redistest.Start(t)
	s, rc, prefix := openWithClient(t, addr)
	ctx := ctxT(t)
	sub := rc.PSubscribe(ctx, "*")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	const payee, name = "0001-001-1-7310042", "ﾋﾐﾂ ﾉ ｳｹﾄﾘﾆﾝ"
	rows := []pushauth.Row{{Payee: payee, PayeeName: name, Amount: "1000000"}, {Payee: "2000002", PayeeName: "Suzuki Hanako", Amount: "2000000"}}
	c := heldChallenge("b1", "alice")
	c.Batch = &pushauth.Batch{Format: "csv", Source: "request", Count: 2, Total: "3000000", Currency: "JPY", RowsDigest: pushauth.RowsDigest(rows)}
	c.Rows = rows
	if _, err := s.CreateChallenge(ctx, c, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve(ctx, "b1", pushauth.StatusApproved, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetChallenge(ctx, "b1")
	if err != nil || !reflect.DeepEqual(got.Rows, rows) || got.Batch == nil || got.Batch.Total != "3000000" {
		t.Fatalf("GetChallenge = rows %q batch %+v, %v; want the rows and batch as put", got.Rows, got.Batch, err)
	}
	for k, v := range dump(t, rc, prefix) {
		if leaks := redistest.FindSecrets(v, payee, name); len(leaks) > 0 {
			t.Errorf("in Redis %s: %v", k, leaks)
		}
	}
	for {
		msg, err := sub.ReceiveTimeout(ctx, 200*time.Millisecond)
		if err != nil {
			break
		}
		if m, ok := msg.(*goredis.Message); ok {
			if leaks := redistest.FindSecrets([]byte(m.Payload), payee, name); len(leaks) > 0 {
				t.Errorf("message on %s: %v", m.Channel, leaks)
			}
		}
	}
}
