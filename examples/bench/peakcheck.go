package main

import (
	"fmt"
	"net/url"

	"github.com/onepush/onepush/examples/legacybank/bank"
)

// peakCheck is the verdict of the peak scenario, computed only from what
// the bank logged, what the phones decided and what the customers' browsers
// saw, joined on each request's ref. The definitions are docs/peak.md's:
//
//   - duplicated: a request reached the bank more than once;
//   - unapproved: a request reached the bank without an approval its
//     phone sent and the gateway accepted (HTTP 200) or may have accepted
//     (no answer, or a 5xx), or a request nobody sent reached it;
//   - lost: the customer was told it succeeded (the bank's own answer) but
//     the bank never executed it, or the bank executed it and the customer
//     was told it failed (an answer from the gateway);
//   - unanswered: the customer got no answer, and no closed connection,
//     within its timeout.
//
// A request whose connection the gateway closed, or that it refused before
// anything was decided (503, instance down), was answered and not
// forwarded; if the bank executed it anyway, it must have been approved,
// exactly once.
type peakCheck struct {
	Requests  int `json:"requests"`
	Executed  int `json:"executed"`
	Approvals int `json:"approvals_accepted"`
	// ApprovalsUnknown were sent by the phone without an answer it could
	// trust (no answer, or a 5xx); they count as approvals.
	ApprovalsUnknown int `json:"approvals_outcome_unknown"`
	Lost             int `json:"lost"`
	Duplicated       int `json:"duplicated"`
	Unapproved       int `json:"unapproved"`
	Unanswered       int `json:"unanswered"`
	// ApprovedNotForwarded: approved on the phone, never executed, the
	// customer told so or its connection closed (the instance holding it
	// stopped, or the customer left). Allowed; counted per client class.
	ApprovedNotForwarded map[string]int `json:"approved_not_forwarded,omitempty"`
	// ExecutedNotTold: executed and approved, but the customer's
	// connection closed before the answer (or she had left).
	ExecutedNotTold int            `json:"executed_not_told"`
	Classes         map[string]int `json:"client_classes"`
	Statuses        map[int]int    `json:"refused_statuses,omitempty"`
	Gaps            []string       `json:"bank_log_gaps,omitempty"`
	Problems        []string       `json:"problems,omitempty"`
}

func (c *peakCheck) ok() bool {
	return c.Lost == 0 && c.Duplicated == 0 && c.Unapproved == 0 && c.Unanswered == 0 && len(c.Gaps) == 0
}

const maxProblems = 20

func (c *peakCheck) problem(format string, args ...any) {
	if len(c.Problems) < maxProblems {
		c.Problems = append(c.Problems, fmt.Sprintf(format, args...))
	}
}

// refOf is the ref field of a logged form body ("" when it has none).
func refOf(body string) string {
	v, err := url.ParseQuery(body)
	if err != nil {
		return ""
	}
	return v.Get("ref")
}

// checkPeak joins the three records. Bank entries whose ref starts with
// skipPrefix (the enrolment's logins, before the users had phones) are
// not requests of the scenario.
func checkPeak(ops []bankRecord, decisions []phoneRecord, requests []clientRecord, skipPrefix string) *peakCheck {
	c := &peakCheck{Requests: len(requests), Classes: map[string]int{}, Statuses: map[int]int{}, ApprovedNotForwarded: map[string]int{}}
	reached := map[string][]bank.Op{}
	for _, r := range ops {
		if r.Gap != "" {
			c.Gaps = append(c.Gaps, r.Gap)
			continue
		}
		ref := refOf(r.Body)
		if ref == "" || (skipPrefix != "" && len(ref) >= len(skipPrefix) && ref[:len(skipPrefix)] == skipPrefix) {
			continue
		}
		reached[ref] = append(reached[ref], r.Op)
	}
	// An approval counts when the gateway accepted it, or when the phone
	// sent it and never learnt what became of it (a stopping instance, a
	// store failing over): its retry elsewhere meets "already decided".
	approvals := map[string]int{}
	for _, d := range decisions {
		if d.Decision != "approve" || d.Ref == "" {
			continue
		}
		switch {
		case d.Accepted || d.Status == 200:
			approvals[d.Ref]++
			c.Approvals++
		case d.Unknown:
			approvals[d.Ref]++
			c.ApprovalsUnknown++
		}
	}
	sent := map[string]bool{}
	for _, r := range requests {
		sent[r.Ref] = true
		c.Classes[r.Class]++
		if r.Class == "refused" {
			c.Statuses[r.Status]++
		}
		got := reached[r.Ref]
		executed := 0
		for _, op := range got {
			if op.Op == bank.OpLogin || op.Op == bank.OpTransfer {
				executed++
			}
		}
		if executed > 0 {
			c.Executed++
		}
		switch {
		case len(got) > 1:
			c.Duplicated++
			c.problem("duplicated: %s %s reached the bank %d times (ops %s)", r.Kind, r.Ref, len(got), opSeqs(got))
		}
		if len(got) > 0 && approvals[r.Ref] == 0 {
			c.Unapproved++
			c.problem("unapproved: %s %s reached the bank (op %s) with no accepted approval; client %s %d", r.Kind, r.Ref, got[0].Op, r.Class, r.Status)
		}
		switch {
		case r.Class == "ok" && executed == 0:
			c.Lost++
			c.problem("lost: %s %s: the client was told it succeeded, the bank has no execution", r.Kind, r.Ref)
		case r.Class == "refused" && executed > 0:
			c.Lost++
			c.problem("lost: %s %s: executed by the bank (op %d), the client was told HTTP %d", r.Kind, r.Ref, got[0].Seq, r.Status)
		case r.Class == "unanswered":
			c.Unanswered++
			c.problem("unanswered: %s %s to instance %d: %s", r.Kind, r.Ref, r.Inst, r.Err)
		}
		if executed > 0 && r.Class != "ok" && r.Class != "refused" {
			c.ExecutedNotTold++
		}
		if executed == 0 && approvals[r.Ref] > 0 && r.Class != "ok" {
			c.ApprovedNotForwarded[r.Class]++
		}
	}
	for ref, got := range reached {
		if !sent[ref] {
			c.Unapproved++
			c.problem("unapproved: %s reached the bank (op %d) but no client sent it", ref, got[0].Seq)
		}
	}
	return c
}

func opSeqs(ops []bank.Op) string {
	s := ""
	for i, op := range ops {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprintf("%d:%s", op.Seq, op.Op)
	}
	return s
}
