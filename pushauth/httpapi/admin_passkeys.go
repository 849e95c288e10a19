package httpapi

import (
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"github.com/onepush/onepush/pushauth"
)

// The admin API's passkey calls:
//
//	GET  {base}/user/passkeys?key=K         her passkeys (no key material)
//	POST {base}/user/passkeys/revoke        {"key", "id"} (id: base64url)
func (a *Admin) passkeyRoutes() {
	a.mux.HandleFunc("GET "+a.Base+"/user/passkeys", a.listPasskeys)
	a.mux.HandleFunc("POST "+a.Base+"/user/passkeys/revoke", a.revokePasskey)
}

// PasskeyView is one passkey as the admin API shows it.
type PasskeyView struct {
	ID        string    `json:"id"`
	AAGUID    string    `json:"aaguid,omitempty"`
	SignCount uint32    `json:"sign_count"`
	Payment   bool      `json:"payment"`
	Browser   string    `json:"browser,omitempty"`
	ClientIP  string    `json:"client_ip,omitempty"`
	Challenge string    `json:"challenge,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	LastUsed  time.Time `json:"last_used,omitzero"`
}

func (a *Admin) listPasskeys(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	if key == "" {
		writeErr(w, http.StatusBadRequest, "key: required")
		return
	}
	list, err := a.Engine.Passkeys(r.Context(), key)
	if err != nil {
		a.fail(w, err)
		return
	}
	out := make([]PasskeyView, 0, len(list))
	for _, p := range list {
		v := PasskeyView{ID: base64.RawURLEncoding.EncodeToString(p.ID), SignCount: p.SignCount, Payment: p.Payment,
			Browser: p.Browser, ClientIP: p.ClientIP, Challenge: p.Challenge, CreatedAt: p.CreatedAt, LastUsed: p.LastUsed}
		if len(p.AAGUID) > 0 {
			v.AAGUID = base64.RawURLEncoding.EncodeToString(p.AAGUID)
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": key, "passkeys": out})
}

func (a *Admin) revokePasskey(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Key string `json:"key"`
		ID  string `json:"id"`
	}
	if err := decodeJSON(r, &req); err != nil || req.Key == "" || req.ID == "" {
		writeErr(w, http.StatusBadRequest, "key and id: required")
		return
	}
	id, err := base64.RawURLEncoding.DecodeString(req.ID)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "id: must be base64url")
		return
	}
	switch err := a.Engine.RemovePasskey(r.Context(), req.Key, id, a.actor(r)); {
	case errors.Is(err, pushauth.ErrNotFound):
		writeErr(w, http.StatusNotFound, "no such passkey")
	case err != nil:
		a.fail(w, err)
	default:
		writeJSON(w, http.StatusOK, map[string]string{"user": req.Key, "removed": req.ID})
	}
}
