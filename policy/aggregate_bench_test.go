package policy

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkBulkAggregate is the work a bulk upload of max_rows (500) rows
// adds to the one request that carries it: parse, check, sum.
func BenchmarkBulkAggregate(b *testing.B) {
	bulk := mustParse(b, strings.Replace(batchPolicy, "max_rows: 5}", "max_rows: 500}", 1)).Rules[0]
	var sb strings.Builder
	sb.WriteString(CSVHeader + "\n")
	for i := 0; i < 500; i++ {
		fmt.Fprintf(&sb, "%07d,Payee Name %d,%d\n", 1000000+i, i, 1000+i)
	}
	req, body := uploadRequestB(b, "csv", []byte(sb.String()))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		x, err := bulk.Extract(req, body)
		if err != nil || x.Aggregate.Count != 500 {
			b.Fatal(err)
		}
	}
}
