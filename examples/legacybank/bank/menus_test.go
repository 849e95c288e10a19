package bank

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"os"
	"testing"
)

func upload(t *testing.T, b *Bank, path, format, file string, c *http.Cookie, extra ...string) int {
	t.Helper()
	data, err := os.ReadFile("../../../policy/testdata/batch/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("format", format)
	_ = mw.WriteField("txn_password", "alice-txn-1")
	for i := 0; i+1 < len(extra); i += 2 {
		_ = mw.WriteField(extra[i], extra[i+1])
	}
	fw, _ := mw.CreateFormFile("file", file)
	_, _ = fw.Write(data)
	_ = mw.Close()
	return do(b, "POST", path, mw.FormDataContentType(), buf.String(), c).Code
}

// TestBulkMenuExecutesEveryRow: the bank reads the CSV and the Zengin file
// of the same three payments alike and logs each executed row.
func TestBulkMenuExecutesEveryRow(t *testing.T) {
	for format, file := range map[string]string{"csv": "bulk3.csv", "zengin": "bulk3.zengin"} {
		b, _ := newTestBank(t)
		c := login(t, b)
		b.ResetOps()
		if code := upload(t, b, "/transfer/bulk", format, file, c); code != http.StatusOK {
			t.Fatalf("%s: status %d", format, code)
		}
		var total int
		var n int
		for _, op := range b.OpsLog() {
			if op.Op == OpBulkRow {
				n++
				var a int
				for _, ch := range op.Amount {
					a = a*10 + int(ch-'0')
				}
				total += a
			}
		}
		if n != 3 || total != 3456000 {
			t.Fatalf("%s: %d rows totalling %d executed, want 3 totalling 3456000", format, n, total)
		}
	}
}

// TestBatchMenuMakerApprover: a batch made by alice is approved only by
// another user of her contract.
func TestBatchMenuMakerApprover(t *testing.T) {
	b, _ := newTestBank(t)
	alice := login(t, b)
	if code := upload(t, b, "/batch/upload", "csv", "bulk3.csv", alice); code != http.StatusOK {
		t.Fatalf("upload: %d", code)
	}
	if rec := do(b, "POST", "/batch/approve", formCT, "batch_no=B000001&txn_password=alice-txn-1", alice); rec.Code != http.StatusForbidden {
		t.Fatalf("maker approving her own batch: %d", rec.Code)
	}
	rec := do(b, "POST", "/login", formCT, "contract_no=1001&user_id=bob&password=bob-pass-1")
	bob := sessionCookie(rec)
	if rec := do(b, "GET", "/batch/B000001/export.csv", "", "", bob); rec.Code != http.StatusOK || rec.Body.String() != "payee_account,payee_name,amount\n1000001,Yamada Taro,1000000\n2000002,Suzuki Hanako,2000000\n3000003,Sato Ken,456000\n" {
		t.Fatalf("export: %d %q", rec.Code, rec.Body.String())
	}
	if rec := do(b, "POST", "/batch/approve", formCT, "batch_no=B000001&txn_password=bob-txn-1", bob); rec.Code != http.StatusOK {
		t.Fatalf("approve: %d", rec.Code)
	}
	if op := lastOp(t, b); op.Op != OpBatchRow || op.UserID != "bob" || op.Batch != "B000001" || op.Amount != "456000" {
		t.Fatalf("last op %+v", op)
	}
}
