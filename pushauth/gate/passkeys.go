package gate

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/passkey"
)

// Passkeys is what the gate needs to offer passkeys: the relying party
// (the bank's domain and origins) and where the registration page lives.
type Passkeys struct {
	RP passkey.RP
	// Path is the registration page (/onepush/passkeys); "" serves none.
	Path string
}

// PasskeyCookie binds a passkey.add challenge to the browser that asked
// for it, as WaitCookie binds a waiting page.
const PasskeyCookie = "onepush_passkey"

// DefaultInstrumentIcon is the instrument icon Secure Payment
// Confirmation shows when the policy names none: a small bank card.
const DefaultInstrumentIcon = "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHZpZXdCb3g9IjAgMCAzMiAyMCI+PHJlY3Qgd2lkdGg9IjMyIiBoZWlnaHQ9IjIwIiByeD0iMyIgZmlsbD0iIzBiNWNhZCIvPjxyZWN0IHk9IjQiIHdpZHRoPSIzMiIgaGVpZ2h0PSI0IiBmaWxsPSIjZmZmIi8+PC9zdmc+"

var passkeyTexts = map[string]map[string]string{
	"en": {
		"pending":   "Press “Use my passkey”: your browser asks for it (Touch ID, Windows Hello or your phone's screen lock). Nothing is sent to your phone.",
		"pendingtx": "Press “Use my passkey”: your browser shows the payee and the amount below and asks for your passkey. Check both before you confirm.",
		"button":    "Use my passkey", "failed": "The passkey was not used. Nothing was sent to the bank; you can try again.",
		"rejected": "The passkey's answer was not accepted. Nothing was sent to the bank.",
		"required": "This operation needs a passkey, and none is registered for your user. Register one on the passkey page after logging in.",
		"clone":    "This passkey looks copied (its counter went backwards). Your user is locked; contact the bank.",
		"wtitle":   "Confirm with your passkey", "shown": "What you confirm",
		// The registration page.
		"title": "Passkeys", "intro": "A passkey lets you log in and approve transfers with your device's screen lock, and no fake site can use it.",
		"count": "Passkeys registered for your user:", "add": "Add a passkey",
		"approve": "To add a passkey, approve the request on your phone: type the code below into the app. The phone names this browser and its address.",
		"number":  "Type this code into the app on your phone:", "create": "Create the passkey",
		"added": "The passkey was added. The bank will send you a notice about it.", "denied": "Not approved on your phone. No passkey was added.",
		"nosession": "Log in first: passkeys are added to the user logged in here.", "notenrolled": "Register your phone first: adding a passkey is approved on it.",
		"refused": "No passkey was added: it needs its own approval on your phone.", "back": "Back to the bank",
	},
	"ja": {
		"pending":   "「パスキーを使う」を押すと、ブラウザがパスキー（Touch ID、Windows Hello、スマートフォンの画面ロック）を求めます。スマートフォンへの通知はありません。",
		"pendingtx": "「パスキーを使う」を押すと、ブラウザが下記の振込先と金額を表示し、パスキーを求めます。両方を確かめてから確認してください。",
		"button":    "パスキーを使う", "failed": "パスキーは使用されませんでした。銀行への送信は行われていません。もう一度お試しいただけます。",
		"rejected": "パスキーの応答を受け付けできませんでした。銀行への送信は行われていません。",
		"required": "この操作にはパスキーが必要ですが、登録されていません。ログイン後にパスキーのページで登録してください。",
		"clone":    "このパスキーは複製された可能性があります（カウンターが戻りました）。ロックしましたので、銀行にご連絡ください。",
		"wtitle":   "パスキーで確認してください", "shown": "確認する内容", "back": "銀行の画面に戻る",
		"title": "パスキー", "intro": "パスキーがあれば、端末の画面ロックでログインや振込の確認ができ、偽サイトには使われません。",
		"count": "登録済みのパスキー：", "add": "パスキーを追加する",
		"approve": "パスキーを追加するには、スマートフォンで承認してください。アプリに下の確認コードを入力してください。スマートフォンにはこのブラウザと接続元が表示されます。",
		"number":  "スマートフォンのアプリに次の確認コードを入力してください：", "create": "パスキーを作成する",
		"added": "パスキーを追加しました。銀行からお知らせが届きます。", "denied": "スマートフォンで承認されませんでした。パスキーは追加されていません。",
		"nosession": "先にログインしてください。パスキーはここでログインしている利用者に追加されます。", "notenrolled": "先にスマートフォンを登録してください。パスキーの追加はスマートフォンで承認します。",
		"refused": "パスキーは追加されていません。追加にはスマートフォンでの承認が必要です。",
	},
}

// choosePasskey decides between passkey and push for a rule with a
// passkey method: a passkey challenge when the user has a passkey; push
// for passkey_or_push otherwise; ErrPasskeyRequired for passkey.
func (g *Gate) choosePasskey(ctx context.Context, rule *policy.Rule, user *pushauth.User, spec *pushauth.ChallengeSpec) error {
	if !rule.UsesPasskey() {
		return nil
	}
	if g.Passkeys == nil {
		return errors.New("onepush: the rule asks for passkeys and the site has no passkey settings")
	}
	have, err := g.Engine.Passkeys(ctx, user.Key)
	if err != nil {
		return err
	}
	switch {
	case len(have) > 0:
		spec.Passkey, spec.CodeDigits = true, 0
	case rule.Method == policy.MethodPasskey:
		return pushauth.ErrPasskeyRequired
	}
	return nil
}

// passkeyRequired answers a request whose rule asks for a passkey its
// user does not have: nothing is forwarded; the page says where to
// register one.
func (g *Gate) passkeyRequired(w http.ResponseWriter, r *http.Request) {
	if g.Passkeys == nil || g.Passkeys.Path == "" {
		g.render(w, r, http.StatusForbidden, PageNotEnrolled, "", "")
		return
	}
	_ = g.renderPasskeys(w, r, http.StatusForbidden, "", nil, "", passkeyTexts[Lang(r)]["required"])
}

// passkeyWaitData adds what the waiting page's passkey block needs: the
// request options (challenge = SHA-256(context) ‖ nonce, the user's
// passkeys) and, for a transaction, what Secure Payment Confirmation
// shows and signs.
func (g *Gate) passkeyWaitData(r *http.Request, c *pushauth.Challenge, data map[string]any) {
	if c.Method != pushauth.MethodPasskey || g.Passkeys == nil {
		return
	}
	t := passkeyTexts[Lang(r)]
	have, err := g.Engine.Passkeys(r.Context(), c.UserKey)
	if err != nil {
		return // the page offers nothing it cannot complete
	}
	ids := make([][]byte, 0, len(have))
	for _, p := range have {
		ids = append(ids, p.ID)
	}
	challenge := passkey.Challenge(c.Context, c.PasskeyNonce)
	timeout := int(time.Until(c.ExpiresAt) / time.Millisecond)
	opts := map[string]any{
		"publicKey": g.Passkeys.RP.RequestOptions(challenge, ids, timeout),
		"msgs":      map[string]string{"failed": t["failed"]},
	}
	if pay := g.spcPayment(c, ""); pay != nil {
		var spcIDs [][]byte
		for _, p := range have {
			if p.Payment {
				spcIDs = append(spcIDs, p.ID)
			}
		}
		if len(spcIDs) > 0 {
			opts["spc"] = map[string]any{
				"credentialIds": spcIDs, "challenge": challenge, "rpId": pay.RPID, "payeeName": pay.PayeeName,
				"instrument": pay.Instrument, "total": pay.Total, "timeout": timeout,
			}
		}
	}
	js, err := json.Marshal(opts)
	if err != nil {
		return
	}
	msg := t["pending"]
	if c.Transaction != nil {
		msg = t["pendingtx"]
	}
	if c.Status == pushauth.StatusPending {
		data["Message"] = msg
	}
	data["Passkey"] = true
	data["PK"] = t
	// The waiting page speaks of the phone; this one asks the browser.
	if wt, ok := data["T"].(map[string]string); ok {
		merged := make(map[string]string, len(wt))
		for k, v := range wt {
			merged[k] = v
		}
		merged["title"], merged["shown"] = t["wtitle"], t["shown"]
		data["T"] = merged
	}
	data["PasskeyJS"] = template.JS(js)
}

// spcPayment is the payment member a Secure Payment Confirmation
// assertion for transaction challenge c must carry, its top origin
// origin (checked against the RP's origins by go-webauthn); nil for a
// challenge that is no transaction. Payee and amount are the raw typed
// values the bank will execute; the instrument is the rule's.
func (g *Gate) spcPayment(c *pushauth.Challenge, origin string) *passkey.Payment {
	if c.Transaction == nil || g.Passkeys == nil {
		return nil
	}
	payee := c.Transaction.Payee
	if c.Transaction.PayeeName != "" {
		payee = c.Transaction.PayeeName + " " + payee
	}
	ins := passkey.Instrument{DisplayName: c.Service, Icon: DefaultInstrumentIcon}
	if ins.DisplayName == "" {
		ins.DisplayName = c.Kind
	}
	if rule := g.ruleNamed(c.Rule); rule != nil && rule.Instrument != nil {
		if rule.Instrument.Name != "" {
			ins.DisplayName = rule.Instrument.Name
		}
		if rule.Instrument.Icon != "" {
			ins.Icon = rule.Instrument.Icon
		}
	}
	return &passkey.Payment{RPID: g.Passkeys.RP.ID, TopOrigin: origin, PayeeName: payee,
		Total: passkey.Amount{Currency: c.Transaction.Currency, Value: c.Transaction.Amount}, Instrument: ins}
}

// waitPasskey approves passkey challenge c with the assertion the page
// posts, then releases the stored request the way every approval does
// (replay). Anything that does not verify answers 401 and releases
// nothing: another origin or RP ID, another challenge's context, a
// payment member that names another amount or payee, another key, an
// assertion used before (the challenge is decided, or its counter did not
// grow).
func (g *Gate) waitPasskey(w http.ResponseWriter, r *http.Request, next Next, c *pushauth.Challenge) error {
	t := passkeyTexts[Lang(r)]
	r.Body = http.MaxBytesReader(w, r.Body, 4*passkey.MaxResponse)
	if err := r.ParseForm(); err != nil || c.Method != pushauth.MethodPasskey || g.Passkeys == nil {
		g.render(w, r, http.StatusBadRequest, PageBadRequest, "", "")
		return nil
	}
	reject := func(why string, count bool) error {
		g.Log.Info("passkey assertion rejected", "challenge", c.ID, "user", c.UserKey, "rule", c.Rule, "reason", why)
		if !count {
			// Not a guess (unreadable, or for a challenge already decided:
			// a replay): audited, aggregated per challenge, not counted.
			g.Engine.RecordAggregated(r.Context(), pushauth.AuditEvent{Type: pushauth.AuditSuspicious, User: c.UserKey, Credential: c.CredentialID,
				Challenge: c.ID, Rule: c.Rule, ClientIP: g.clientIP(r), Outcome: "passkey_rejected", Actor: "browser", Detail: why,
				Service: c.Service, Host: c.Host}, "passkey-rejected\x00"+c.ID)
		}
		if count && g.Engine.PasskeyFailed(r.Context(), c, why) {
			clearWaitCookie(w, g.WaitPath)
			g.render(w, r, http.StatusForbidden, PageLocked, c.ID, "")
			return nil
		}
		g.renderWait(w, r, http.StatusUnauthorized, c, "", t["rejected"])
		return nil
	}
	p, err := passkey.Parse([]byte(r.PostForm.Get("credential")))
	if err != nil {
		return reject(err.Error(), false)
	}
	if c.Status != pushauth.StatusPending || !g.Engine.Now().Before(c.ExpiresAt) {
		// Decided already (an assertion posted twice) or too late: this
		// assertion approves nothing.
		return reject("challenge is "+string(c.Status), false)
	}
	have, err := g.Engine.Passkeys(r.Context(), c.UserKey)
	if err != nil {
		return g.unavailable(w, r, &policy.Rule{Name: c.Rule}, err)
	}
	i := slices.IndexFunc(have, func(k *pushauth.Passkey) bool { return bytes.Equal(k.ID, p.RawID) })
	if i < 0 {
		return reject("not a passkey of this user", true)
	}
	exp := passkey.Expected{Challenge: passkey.Challenge(c.Context, c.PasskeyNonce)}
	if string(p.Response.CollectedClientData.Type) == "payment.get" {
		exp.Payment = g.spcPayment(c, p.Response.CollectedClientData.Origin)
		if exp.Payment == nil {
			return reject("a payment assertion for a challenge that is no transaction", true)
		}
	}
	got, err := g.Passkeys.RP.VerifyAssertion(p, have[i].PublicKey, exp)
	if err != nil {
		return reject(err.Error(), true)
	}
	if _, err := g.Engine.ApproveWithPasskey(r.Context(), c, got.CredentialID, got.SignCount); err != nil {
		switch {
		case errors.Is(err, pushauth.ErrSignCount):
			clearWaitCookie(w, g.WaitPath)
			g.renderWait(w, r, http.StatusUnauthorized, c, "", t["clone"])
			return nil
		case errors.Is(err, pushauth.ErrConflict), errors.Is(err, pushauth.ErrUnknownPasskey):
			return reject(err.Error(), false)
		case errors.Is(err, pushauth.ErrLocked):
			clearWaitCookie(w, g.WaitPath)
			g.render(w, r, http.StatusForbidden, PageLocked, c.ID, "")
			return nil
		}
		return g.unavailable(w, r, &policy.Rule{Name: c.Rule}, err)
	}
	return g.replay(w, r, next, c)
}

// PasskeyPage is the registration page under Passkeys.Path: the user
// logged in on this browser asks to add a passkey, approves a passkey.add
// challenge on her phone with the code this page shows, and only then
// gets creation options and may register one.
type PasskeyPage struct{ *Gate }

// Serve answers GET <path> (the page), POST <path>/add (start a
// passkey.add challenge), GET <path>/<id>/status, GET <path>/<id>/options
// and POST <path>/<id>/finish.
func (p PasskeyPage) Serve(w http.ResponseWriter, r *http.Request) error {
	stripVerifiedHeaders(r.Header)
	g := p.Gate
	rest := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, g.Passkeys.Path), "/")
	id, action, _ := strings.Cut(rest, "/")
	if r.Method == http.MethodPost && !sameOrigin(r, g.Passkeys.RP.Origins) {
		http.Error(w, "cross-site request refused", http.StatusForbidden)
		return nil
	}
	user, session, ok := g.passkeyVisitor(r)
	switch {
	case rest == "" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		return g.renderPasskeys(w, r, http.StatusOK, user, nil, "", "")
	case rest == "add" && r.Method == http.MethodPost:
		if !ok {
			return g.renderPasskeys(w, r, http.StatusForbidden, "", nil, "", passkeyTexts[Lang(r)]["nosession"])
		}
		return g.startPasskeyAdd(w, r, user, session)
	}
	c, bound := g.boundPasskeyAdd(r, id)
	if !bound || !ok || c.UserKey != user || subtle.ConstantTimeCompare([]byte(c.SessionHash), []byte(sessionHashOf(session))) != 1 {
		// Another browser, another session, another user, or no
		// passkey.add challenge at all (a login's approval is none).
		g.Log.Info("passkey registration refused: no passkey.add challenge of this browser and session", "user", user, "challenge", id)
		g.Engine.RecordAggregated(r.Context(), pushauth.AuditEvent{Type: pushauth.AuditRefused, User: user, ClientIP: g.clientIP(r),
			Outcome: "passkey_refused", Actor: "browser", Detail: "passkey registration without its own approved passkey.add challenge"},
			"passkey-refused\x00"+user)
		writeJSON(w, http.StatusForbidden, map[string]string{"error": passkeyTexts[Lang(r)]["refused"]})
		return nil
	}
	switch {
	case action == "status" && r.Method == http.MethodGet:
		ctx, cancel := context.WithTimeout(r.Context(), longPoll)
		defer cancel()
		cur, err := g.Engine.Await(ctx, c.ID, g.clientIP(r))
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "try again"})
			return nil
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": cur.Status})
	case action == "options" && r.Method == http.MethodGet:
		if c.Status != pushauth.StatusApproved || c.Void(g.Engine.Now()) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": passkeyTexts[Lang(r)]["refused"]})
			return nil
		}
		have, err := g.Engine.Passkeys(r.Context(), user)
		if err != nil {
			return g.unavailable(w, r, &policy.Rule{Name: pushauth.KindPasskeyAdd}, err)
		}
		var exclude [][]byte
		for _, k := range have {
			exclude = append(exclude, k.ID)
		}
		writeJSON(w, http.StatusOK, g.Passkeys.RP.CreationOptions(addChallenge(c), userHandle(user), user, user, exclude, 120000))
	case action == "finish" && r.Method == http.MethodPost:
		return g.finishPasskeyAdd(w, r, c)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
	return nil
}

// passkeyVisitor is the user the gateway learned this browser's bank
// session belongs to (an approved or allowed login), and that session;
// false when there is none, or a login on it is pending.
func (g *Gate) passkeyVisitor(r *http.Request) (user, session string, ok bool) {
	session, single := g.requestSession(r)
	if !single || session == "" {
		return "", "", false
	}
	user, pending, err := g.sessionUser(r.Context(), session)
	if err != nil || pending || user == "" {
		return "", "", false
	}
	return user, session, true
}

// startPasskeyAdd creates the passkey.add challenge (code transfer; the
// phone shows this browser, its address, the service and host) and shows
// its code.
func (g *Gate) startPasskeyAdd(w http.ResponseWriter, r *http.Request, userKey, session string) error {
	t := passkeyTexts[Lang(r)]
	user, err := g.Engine.Store().GetUser(r.Context(), userKey)
	if err != nil || !user.Enrolled() {
		return g.renderPasskeys(w, r, http.StatusForbidden, userKey, nil, "", t["notenrolled"])
	}
	tok, err := waitToken()
	if err != nil {
		return err
	}
	spec := pushauth.ChallengeSpec{
		UserKey: userKey, Rule: pushauth.KindPasskeyAdd, Kind: pushauth.KindPasskeyAdd,
		Display:  []pushauth.Field{{Label: "操作 / Action", Value: "パスキーの追加 / Add a passkey"}},
		ClientIP: g.clientIP(r), UserAgent: r.UserAgent(), Timeout: 2 * time.Minute,
		CodeDigits: policy.DefaultCodeDigits, BrowserHash: tokenHash(tok),
		Service: g.Policy.Service, Host: r.Host, SessionHash: sessionHashOf(session),
	}
	c, err := g.Engine.Start(r.Context(), user, spec)
	if err != nil {
		return g.startFailed(w, r, &policy.Rule{Name: pushauth.KindPasskeyAdd}, user, err)
	}
	http.SetCookie(w, &http.Cookie{
		Name: PasskeyCookie, Value: c.ID + "." + tok, Path: g.Passkeys.Path, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, Expires: c.ExpiresAt.Add(time.Minute),
	})
	return g.renderPasskeys(w, r, http.StatusOK, userKey, c, "", "")
}

// boundPasskeyAdd returns passkey.add challenge id if this browser's
// cookie binds it.
func (g *Gate) boundPasskeyAdd(r *http.Request, id string) (*pushauth.Challenge, bool) {
	c, ok := g.cookieChallenge(r, PasskeyCookie, id)
	if !ok || c.Kind != pushauth.KindPasskeyAdd {
		return nil, false
	}
	return c, true
}

// finishPasskeyAdd verifies the registration and stores the passkey, once
// per approved passkey.add challenge.
func (g *Gate) finishPasskeyAdd(w http.ResponseWriter, r *http.Request, c *pushauth.Challenge) error {
	t := passkeyTexts[Lang(r)]
	if c.Status != pushauth.StatusApproved {
		g.Log.Info("passkey registration refused: passkey.add not approved", "challenge", c.ID, "user", c.UserKey, "status", string(c.Status))
		writeJSON(w, http.StatusForbidden, map[string]string{"error": t["refused"]})
		return nil
	}
	body, err := readBounded(w, r, passkey.MaxResponse)
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "registration too large"})
		return nil
	}
	reg, err := g.Passkeys.RP.VerifyRegistration(body, addChallenge(c))
	if err != nil {
		g.Log.Info("passkey registration rejected", "challenge", c.ID, "user", c.UserKey, "reason", err.Error())
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": t["rejected"]})
		return nil
	}
	p := &pushauth.Passkey{ID: reg.ID, UserKey: c.UserKey, PublicKey: reg.PublicKey, SignCount: reg.SignCount, AAGUID: reg.AAGUID,
		Payment: true, Browser: c.UserAgent, ClientIP: g.clientIP(r)}
	switch err := g.Engine.AddPasskey(r.Context(), c, p); {
	case errors.Is(err, pushauth.ErrNotPasskeyAdd), errors.Is(err, pushauth.ErrTooManyPasskeys), errors.Is(err, pushauth.ErrExists):
		writeJSON(w, http.StatusForbidden, map[string]string{"error": t["refused"]})
		return nil
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "store unavailable"})
		return nil
	}
	http.SetCookie(w, &http.Cookie{Name: PasskeyCookie, Value: "", Path: g.Passkeys.Path, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, map[string]string{"status": "added", "message": t["added"]})
	return nil
}

// addChallenge is the registration challenge of an approved passkey.add
// challenge: bound to its context, like an assertion's.
func addChallenge(c *pushauth.Challenge) []byte {
	return passkey.Challenge(c.Context, []byte(pushauth.KindPasskeyAdd))
}

// userHandle is the WebAuthn user handle of a user key: a hash, so the
// authenticator keeps no account number.
func userHandle(user string) []byte {
	h := pushauth.SessionHash("passkey-user\x00" + user)
	return []byte(h[:32])
}

// readBounded reads a body of at most n bytes.
func readBounded(w http.ResponseWriter, r *http.Request, n int64) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(http.MaxBytesReader(w, r.Body, n))
	return b.Bytes(), err
}

// sameOrigin refuses posts another site makes the browser send: Fetch
// Metadata must say same-origin (or be absent: no browser), and the
// Origin header, when it names one, must be one of the RP's origins.
func sameOrigin(r *http.Request, origins []string) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		// No origin, or an opaque one (the page's no-referrer policy
		// makes a form post say "null"): Fetch Metadata above decides.
		return true
	}
	u, err := url.Parse(o)
	return err == nil && slices.ContainsFunc(origins, func(x string) bool { return strings.EqualFold(x, u.Scheme+"://"+u.Host) })
}

// renderPasskeys writes the registration page: her passkeys, the add
// button, or the code of a pending passkey.add challenge c.
func (g *Gate) renderPasskeys(w http.ResponseWriter, r *http.Request, status int, user string, c *pushauth.Challenge, info, errMsg string) error {
	lang := Lang(r)
	nonce := pageNonce()
	data := map[string]any{"Lang": lang, "T": passkeyTexts[lang], "Nonce": nonce, "Info": info, "Error": errMsg, "User": user,
		"Base": strings.TrimSuffix(g.Passkeys.Path, "/"), "Back": g.Pages.Back}
	if user != "" {
		have, err := g.Engine.Passkeys(r.Context(), user)
		if err != nil {
			return g.unavailable(w, r, &policy.Rule{Name: pushauth.KindPasskeyAdd}, err)
		}
		data["Count"] = len(have)
	}
	if c != nil {
		data["Challenge"] = c.ID
		data["Code"] = c.Code
	}
	setPageHeaders(w.Header(), nonce)
	w.WriteHeader(status)
	return g.Pages.passkeys.Execute(w, data)
}

// pageNonce is a fresh script nonce for one page.
func pageNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawStdEncoding.EncodeToString(b)
}

// verifiedBy is what the bank is told approved a request: "push" or
// "passkey" (X-Onepush-Verified).
func verifiedBy(c *pushauth.Challenge) string {
	if c.Method == pushauth.MethodPasskey {
		return pushauth.MethodPasskey
	}
	return "push"
}
