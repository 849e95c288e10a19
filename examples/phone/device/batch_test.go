package device

import (
	"errors"
	"testing"

	"github.com/onepush/onepush/pushauth"
)

// TestBatchRowsDigestMatchesServer: the phone's own digest of the rows is
// the gateway's, and any change to a row — or a row added, or values
// shifted between columns — changes it, so CheckRows refuses.
func TestBatchRowsDigestMatchesServer(t *testing.T) {
	rows := []Row{{"1000001", "Yamada Taro", "1000000"}, {"2000002", "ﾔﾏﾀﾞ ﾀﾛｳ", "2000000"}, {"3000003", "Sato Ken", "456000"}}
	srv := make([]pushauth.Row, len(rows))
	for i, r := range rows {
		srv[i] = pushauth.Row{Payee: r.Payee, PayeeName: r.PayeeName, Amount: r.Amount}
	}
	b := &Batch{Count: 3, Total: "3456000", RowsDigest: pushauth.RowsDigest(srv)}
	if got := RowsDigest(rows); got != b.RowsDigest {
		t.Fatalf("phone digest %s, gateway %s", got, b.RowsDigest)
	}
	if err := CheckRows(b, rows); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]Row{
		"payee changed": {{"9999999", "Yamada Taro", "1000000"}, rows[1], rows[2]},
		"row added":     append(append([]Row{}, rows...), Row{"4", "X", "1"}),
		"shifted":       {{"1000001,Yamada", "Taro", "1000000"}, rows[1], rows[2]},
		"amounts moved": {{"1000001", "Yamada Taro", "2000000"}, {"2000002", "ﾔﾏﾀﾞ ﾀﾛｳ", "1000000"}, rows[2]},
	} {
		if err := CheckRows(b, bad); !errors.Is(err, ErrRowsMismatch) {
			t.Errorf("%s: CheckRows = %v, want ErrRowsMismatch", name, err)
		}
	}
}
