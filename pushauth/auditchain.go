package pushauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
)

// The audit trail is a hash chain, one per store. An event's record (the
// bytes the store keeps, its canonical form) is the encoding/json
// encoding of AuditEvent with Time in UTC: fields in the order of the
// struct, empty ones left out. Each record carries Seq, one more than the
// previous record's, and Prev, the hex SHA-256 of the previous record's
// bytes. Changing, removing or reordering a kept event therefore breaks
// the chain at the next one.
//
// What it does not show: the newest event changed or removed (nothing
// follows it: compare the head VerifyAudit reports with an earlier one,
// or with the copy in the SIEM), and the oldest events removed, which
// looks like retention trimming: the chain is anchored at the oldest kept
// event, whatever its Prev.

// ChainAudit sets ev's Seq and Prev to follow prev, the previous record
// (nil: the trail is empty), and returns ev so chained and its record.
func ChainAudit(ev AuditEvent, prev []byte) (AuditEvent, []byte, error) {
	ev.Time = ev.Time.UTC()
	ev.Seq, ev.Prev = 1, ""
	if prev != nil {
		seq, err := seqOf(prev)
		if err != nil {
			return ev, nil, err
		}
		ev.Seq, ev.Prev = seq+1, AuditHash(prev)
	}
	rec, err := json.Marshal(ev)
	return ev, rec, err
}

// seqOf reads a record's seq without decoding it all: an AuditEvent has
// no nested object and encoding/json escapes every quote inside a string,
// so the one unescaped "seq": in a record is its key.
func seqOf(rec []byte) (uint64, error) {
	i := bytes.LastIndex(rec, []byte(`"seq":`))
	if i < 0 {
		return 0, nil // an event from before the chain
	}
	digits := rec[i+len(`"seq":`):]
	n := 0
	for n < len(digits) && digits[n] >= '0' && digits[n] <= '9' {
		n++
	}
	seq, err := strconv.ParseUint(string(digits[:n]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("audit chain: the last record's seq is unreadable: %w", err)
	}
	return seq, nil
}

// AuditHash is the hex SHA-256 of a record.
func AuditHash(record []byte) string {
	h := sha256.Sum256(record)
	return hex.EncodeToString(h[:])
}

// AuditWalker is an audit log whose records can be read as stored, oldest
// first (the embedded store, Redis; memory re-encodes its events).
type AuditWalker interface {
	WalkAudit(ctx context.Context, fn func(record []byte) error) error
}

// AuditVerification is what VerifyAudit found.
type AuditVerification struct {
	Events int `json:"events"`
	// Unchained counts events from before the chain existed (no Seq),
	// which may only precede the first chained one.
	Unchained int `json:"unchained,omitempty"`
	// First and Last are the Seq of the oldest and newest chained events;
	// Anchor is the Prev of the oldest (its predecessor was trimmed, or ""
	// when the trail starts there). Head is the hash of the newest record.
	First  uint64 `json:"first"`
	Last   uint64 `json:"last"`
	Anchor string `json:"anchor,omitempty"`
	Head   string `json:"head,omitempty"`
	// Break describes the first break, nil when the chain holds.
	Break *AuditBreak `json:"break,omitempty"`
}

// AuditBreak is where a chain breaks.
type AuditBreak struct {
	// Seq is the event found changed, or the first one missing.
	Seq uint64 `json:"seq"`
	// Kind is changed, removed, reordered or unreadable.
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

func (b *AuditBreak) Error() string {
	return fmt.Sprintf("audit event seq %d %s: %s", b.Seq, b.Kind, b.Detail)
}

// VerifyAudit walks the trail of w and reports the first break.
func VerifyAudit(ctx context.Context, w AuditWalker) (*AuditVerification, error) {
	v := &AuditVerification{}
	var prev, lastUnchained []byte
	var prevSeq uint64
	err := w.WalkAudit(ctx, func(rec []byte) error {
		if v.Break != nil {
			return nil
		}
		v.Events++
		var ev AuditEvent
		if err := json.Unmarshal(rec, &ev); err != nil {
			v.Break = &AuditBreak{Seq: prevSeq + 1, Kind: "unreadable", Detail: fmt.Sprintf("the record after seq %d is not an audit event: %v", prevSeq, err)}
			return nil
		}
		switch {
		case ev.Seq == 0 && prev == nil:
			v.Unchained++
			lastUnchained = rec
			return nil
		case ev.Seq == 0:
			v.Break = &AuditBreak{Seq: prevSeq + 1, Kind: "changed", Detail: fmt.Sprintf("the event after seq %d (%s %s) has no chain fields", prevSeq, ev.Time.UTC().Format("2006-01-02T15:04:05Z"), ev.Type)}
		case v.First == 0 && prevSeq == 0 && v.Unchained > 0 && (ev.Seq != 1 || ev.Prev != AuditHash(lastUnchained)):
			// Events from before the chain are older than every chained
			// one, so retention trims them first: while any is kept, the
			// chain starts intact at seq 1, chained to the last of them
			// (ChainAudit). Otherwise the oldest chained events had their
			// chain fields removed to pass them off as older, and edited.
			at := ev.Seq
			if at > 1 {
				at--
			}
			v.Break = &AuditBreak{Seq: at, Kind: "changed", Detail: fmt.Sprintf("the chain starts at seq %d after %d events without chain fields: they were chained events, or the last of them was changed", ev.Seq, v.Unchained)}
		case v.First == 0 && prevSeq == 0:
			v.First, v.Anchor = ev.Seq, ev.Prev
		case ev.Seq <= prevSeq:
			v.Break = &AuditBreak{Seq: ev.Seq, Kind: "reordered", Detail: fmt.Sprintf("seq %d comes after seq %d", ev.Seq, prevSeq)}
		case ev.Seq > prevSeq+1:
			v.Break = &AuditBreak{Seq: prevSeq + 1, Kind: "removed", Detail: fmt.Sprintf("seq %d to %d are missing between seq %d and seq %d", prevSeq+1, ev.Seq-1, prevSeq, ev.Seq)}
		case ev.Prev != AuditHash(prev):
			v.Break = &AuditBreak{Seq: prevSeq, Kind: "changed", Detail: fmt.Sprintf("its record no longer has the hash seq %d recorded (or seq %d's prev was changed)", ev.Seq, ev.Seq)}
		}
		if v.Break == nil {
			prev, prevSeq, v.Last = rec, ev.Seq, ev.Seq
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if prev != nil {
		v.Head = AuditHash(prev)
	}
	return v, nil
}
