package httpapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/onepush/onepush/pushauth"
)

// rows serves GET {base}/challenges/{id}/rows?offset=N&limit=M: a page of
// the rows of a pending batch challenge addressed to the token's
// credential, at most pushauth.MaxRowsPage per page. The phone pages
// through all of them and checks the context's rows_digest before it
// signs. 409 once the challenge is decided: the rows are customer data and
// are shown only while there is something to approve.
func (d *Device) rows(w http.ResponseWriter, r *http.Request, cred *pushauth.Credential) {
	num := func(name string, def int) (int, bool) {
		s := r.URL.Query().Get(name)
		if s == "" {
			return def, true
		}
		n, err := strconv.Atoi(s)
		return n, err == nil && n >= 0 && n <= pushauth.MaxBatchRows
	}
	offset, ok1 := num("offset", 0)
	limit, ok2 := num("limit", pushauth.MaxRowsPage)
	if !ok1 || !ok2 || limit == 0 {
		writeErr(w, http.StatusBadRequest, "offset must be a whole number from 0 and limit from 1 (at most 100 rows are returned)")
		return
	}
	rows, c, err := d.Engine.ChallengeRows(r.Context(), cred, r.PathValue("id"), offset, limit)
	switch {
	case errors.Is(err, pushauth.ErrChallengeNotFound):
		writeErr(w, http.StatusNotFound, "unknown challenge")
		return
	case errors.Is(err, pushauth.ErrConflict):
		writeErr(w, http.StatusConflict, "challenge is no longer pending")
		return
	case err != nil:
		writeErr(w, http.StatusServiceUnavailable, "store unavailable")
		return
	}
	if c.Batch == nil {
		writeErr(w, http.StatusNotFound, "challenge has no rows")
		return
	}
	if rows == nil {
		rows = []pushauth.Row{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"count": len(c.Rows), "offset": offset, "rows": rows})
}
