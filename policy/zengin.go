package policy

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/japanese"
)

// Zengin (全銀協) transfer files: fixed-length records of ZenginRecordLen bytes in
// Shift_JIS — one header (データ区分 1), data records (2), a trailer (8) with the
// count and total, and an end record (9). Records may be separated by CRLF or LF.
const ZenginRecordLen = 120

// zenginField is one field of a data record: 0-based byte offset and length.
type zenginField struct{ off, n int }

// The data record (データレコード) layout of 総合振込 and 給与・賞与振込.
var (
	zBank    = zenginField{1, 4}   // 被仕向銀行番号
	zBranch  = zenginField{20, 3}  // 被仕向支店番号
	zType    = zenginField{42, 1}  // 預金種目
	zAccount = zenginField{43, 7}  // 口座番号
	zName    = zenginField{50, 30} // 受取人名
	zAmount  = zenginField{80, 10} // 振込金額
	zCount   = zenginField{1, 6}   // trailer: 合計件数
	zTotal   = zenginField{7, 12}  // trailer: 合計金額
)

func (f zenginField) of(rec []byte) []byte { return rec[f.off : f.off+f.n] }

// parseZengin reads the data records of a Zengin file. The header must be a transfer
// (種別コード 21 総合振込, 11 給与, 12 賞与) in JIS code (コード区分 0); the trailer's
// count and total must agree with the data records; nothing may follow the end record
// but an EOF byte (0x1A). The payee is bank-branch-type-account; the amount loses its
// leading zeros.
func parseZengin(data []byte, maxRows int) ([]Row, error) {
	bad := func(line int, format string, args ...any) error {
		return fmt.Errorf("%w: zengin record %d: %s", ErrBadRequest, line, fmt.Sprintf(format, args...))
	}
	data = bytes.TrimSuffix(data, []byte{0x1a})
	var recs [][]byte
	for len(data) > 0 {
		if len(data) < ZenginRecordLen {
			return nil, bad(len(recs)+1, "is %d bytes, not %d", len(data), ZenginRecordLen)
		}
		rec := data[:ZenginRecordLen]
		if i := bytes.IndexAny(rec, "\r\n"); i >= 0 {
			return nil, bad(len(recs)+1, "has a line break at byte %d (records are %d bytes)", i+1, ZenginRecordLen)
		}
		recs = append(recs, rec)
		data = data[ZenginRecordLen:]
		if len(recs) > maxRows+3 {
			return nil, fmt.Errorf("%w: zengin file has more than the %d rows allowed", ErrBadRequest, maxRows)
		}
		if bytes.HasPrefix(data, []byte("\r\n")) {
			data = data[2:]
		} else if bytes.HasPrefix(data, []byte("\n")) {
			data = data[1:]
		}
	}
	if len(recs) < 4 {
		return nil, fmt.Errorf("%w: zengin file has %d records; a header, data, a trailer and an end record are required", ErrBadRequest, len(recs))
	}
	h := recs[0]
	if h[0] != '1' {
		return nil, bad(1, "is not a header (データ区分 %q, want 1)", h[0])
	}
	if kind := string(h[1:3]); kind != "21" && kind != "11" && kind != "12" {
		return nil, bad(1, "種別コード %q is not a transfer (21, 11 or 12)", kind)
	}
	if h[3] != '0' {
		return nil, bad(1, "コード区分 %q is not 0 (JIS)", h[3])
	}
	last := len(recs) - 1
	if recs[last][0] != '9' {
		return nil, bad(last+1, "is not the end record (データ区分 9)")
	}
	tr := recs[last-1]
	if tr[0] != '8' {
		return nil, bad(last, "is not the trailer (データ区分 8)")
	}
	dec := japanese.ShiftJIS.NewDecoder()
	rows := make([]Row, 0, last-2)
	var sum int64
	for i, rec := range recs[1 : last-1] {
		line := i + 2
		if rec[0] != '2' {
			return nil, bad(line, "is not a data record (データ区分 %q, want 2)", rec[0])
		}
		for _, f := range []zenginField{zBank, zBranch, zType, zAccount, zAmount} {
			if !allDigits(f.of(rec)) {
				return nil, bad(line, "bytes %d-%d are not digits", f.off+1, f.off+f.n)
			}
		}
		name, err := dec.Bytes(zName.of(rec))
		if err != nil || !utf8.Valid(name) || bytes.ContainsRune(name, utf8.RuneError) {
			return nil, bad(line, "受取人名 is not Shift_JIS")
		}
		amount := strings.TrimLeft(string(zAmount.of(rec)), "0")
		n, _ := strconv.ParseInt(amount, 10, 64)
		sum += n // at most 10 digits each and MaxRows rows: no overflow
		rows = append(rows, Row{
			Payee:     string(zBank.of(rec)) + "-" + string(zBranch.of(rec)) + "-" + string(zType.of(rec)) + "-" + string(zAccount.of(rec)),
			PayeeName: strings.TrimRight(string(name), " "),
			Amount:    amount,
		})
	}
	if !allDigits(zCount.of(tr)) || !allDigits(zTotal.of(tr)) {
		return nil, bad(last, "合計件数 or 合計金額 is not digits")
	}
	if c, _ := strconv.Atoi(string(zCount.of(tr))); c != len(rows) {
		return nil, bad(last, "合計件数 says %d rows but the file has %d", c, len(rows))
	}
	if t, _ := strconv.ParseInt(string(zTotal.of(tr)), 10, 64); t != sum {
		return nil, bad(last, "合計金額 says %d but the rows sum to %d", t, sum)
	}
	return rows, nil
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// CSVHeader is the first line a CSV batch must have.
const CSVHeader = "payee_account,payee_name,amount"

// parseCSVRows reads a UTF-8 CSV batch (RFC 4180, as encoding/csv reads it): the header
// CSVHeader, then one row per line with exactly three fields. A byte-order mark,
// invalid UTF-8 and blank fields are refused with the line they are on.
func parseCSVRows(data []byte, maxRows int) ([]Row, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: csv file is not valid UTF-8", ErrBadRequest)
	}
	if bytes.HasPrefix(data, []byte("\uFEFF")) {
		return nil, fmt.Errorf("%w: csv file starts with a byte-order mark", ErrBadRequest)
	}
	cr := csv.NewReader(bytes.NewReader(data))
	cr.FieldsPerRecord = 3
	cr.ReuseRecord = true
	var rows []Row
	for i := 0; ; i++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("%w: csv line %d: %v", ErrBadRequest, pe.StartLine, pe.Err)
			}
			return nil, fmt.Errorf("%w: csv: %v", ErrBadRequest, err)
		}
		line, _ := cr.FieldPos(0)
		if i == 0 {
			if strings.Join(rec, ",") != CSVHeader {
				// Not quoted: it may be a row, and rows are never logged.
				return nil, fmt.Errorf("%w: csv line %d: the first line must be the header %q", ErrBadRequest, line, CSVHeader)
			}
			continue
		}
		if len(rows) == maxRows {
			return nil, fmt.Errorf("%w: csv file has more than the %d rows allowed", ErrBadRequest, maxRows)
		}
		row := Row{Payee: rec[0], PayeeName: rec[1], Amount: rec[2]}
		if err := checkRow(row); err != nil {
			return nil, fmt.Errorf("%w: csv line %d: %v", ErrBadRequest, line, err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}
