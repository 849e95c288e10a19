package httpapi

import (
	"io"
	"net/http"
	"strconv"

	"github.com/onepush/onepush/pushauth"
)

// storeBackup serves GET {base}/store/backup: a consistent copy of the
// store's file. The copy holds bindings and the sealed security-code
// secrets, never a secret in clear; the call is audited.
func (a *Admin) storeBackup(w http.ResponseWriter, r *http.Request) {
	sn, ok := a.Engine.Store().(pushauth.Snapshotter)
	if !ok {
		writeErr(w, http.StatusNotImplemented, "this store has no backup through the gateway: the memory store keeps nothing across a restart; back up Redis with its own persistence (RDB/AOF)")
		return
	}
	f, desc, err := sn.Snapshot(r.Context())
	if err != nil {
		a.fail(w, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		a.fail(w, err)
		return
	}
	a.Engine.Record(r.Context(), pushauth.AuditEvent{Type: pushauth.AuditAdmin, Outcome: "store.backup", Actor: a.actor(r), Detail: desc})
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	w.Header().Set("Content-Disposition", `attachment; filename="onepush-store.db"`)
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, f); err != nil {
		a.Engine.Logger().Warn("admin API: sending a store backup", "error", err)
	}
}
