package gate

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
	"github.com/onepush/onepush/pushauth/ocra"
)

// WaitCookie binds an interstitial challenge to the browser that started
// it: "<challenge id>.<random token>"; the challenge keeps only the
// token's hash.
const WaitCookie = "onepush_wait"

// longPoll bounds one status request of the waiting page.
const longPoll = 25 * time.Second

// waitTexts are the waiting page's words. Each state has a title
// ("t"+state) and a message; "nothing" (a transaction) or "nothinglogin"
// follows the message of every state in which nothing reached the bank.
var waitTexts = map[string]map[string]string{
	"en": {
		"twaiting": "Approve on your phone", "waiting": "A request was sent to your phone. Open the app and approve it there.",
		"waitingcode": "A request was sent to your phone. Type the code below into the app and approve it there.",
		"tapproved":   "Approved", "approved": "Approved on your phone. Press Continue to go on.", "approvedjs": "Approved on your phone. Continuing…",
		"tdenied": "Not approved", "denied": "The request was denied on your phone. If you did not start it, contact the bank.",
		"twrongcode": "The code did not match", "wrongcode": "The code typed into the app was not the one this page showed, so the request was stopped. Start again from the bank's page: a new code will be shown.",
		"tcancelled": "Cancelled", "cancelled": "You cancelled the request.",
		"texpired": "Time ran out", "expired": "No approval arrived from your phone in time. Start again from the bank's page.",
		"tsuperseded": "Stopped: another request at the same time", "superseded": "Another request for your account asked for approval at the same time, so both were stopped. Please try again. If you did not start the other one, contact the bank.",
		"tlocked": "Push authentication locked", "locked": "After repeated failures, push authentication for your account is locked. Contact the bank to unlock it.",
		"nothing": "The transaction was not carried out.", "nothinglogin": "You are not logged in.", "sep": " ",
		"request": "Your request",

		"number": "Type this code into the app on your phone:", "shown": "Your phone shows", "continue": "Continue",
		"timeleft": "Time left", "auto": "This page moves on by itself once you approve.",
		"nojs": "When you have approved on your phone, press “Check”.", "check": "Check",
		"back":   "Back to the bank",
		"useotp": "Use the security code instead", "code": "6-digit security code", "submitotp": "Confirm with the code",
		"resend": "Send the request again", "cancel": "Cancel", "ref": "Reference",
		"badcode": "The security code is wrong or was already used.", "resent": "The request was sent to your phone again.",
		"ratelimited": "Please wait a little before sending the request again.",

		"othersession": "This request can only be continued in the bank session it was started in. The transaction was not carried out.",
		"offline":      "No network on your phone? Use a transaction code",
		"offlinehelp":  "In the app, open “Transaction code” and type these three values exactly as shown; then type the 8-digit response it shows below.",
		"challenge":    "Challenge number", "response": "8-digit response", "submitresp": "Confirm with the response",
		"badresp": "The response is wrong or was already used. It is computed over the challenge number, payee and amount shown here.",
		"nokey":   "Your app cannot compute transaction codes: approve on the phone, or register the app again.",
		"otptx":   "A security code cannot approve a transaction: use the transaction code, which is computed over its payee and amount.",
		"service": "Service", "amount": "Amount", "payee": "Payee", "payeename": "Payee name",
	},
	"ja": {
		"twaiting": "スマートフォンで承認してください", "waiting": "スマートフォンに承認依頼を送信しました。アプリを開いて承認してください。",
		"waitingcode": "スマートフォンに承認依頼を送信しました。アプリに下の確認コードを入力して承認してください。",
		"tapproved":   "承認されました", "approved": "スマートフォンで承認されました。「次へ」を押して進んでください。", "approvedjs": "スマートフォンで承認されました。処理を続けます…",
		"tdenied": "承認されませんでした", "denied": "スマートフォンで拒否されました。お心当たりがない場合は銀行にご連絡ください。",
		"twrongcode": "確認コードが一致しませんでした", "wrongcode": "アプリに入力された確認コードがこの画面のコードと異なっていたため、中止しました。銀行の画面からもう一度操作してください（新しいコードが表示されます）。",
		"tcancelled": "取り消しました", "cancelled": "承認依頼を取り消しました。",
		"texpired": "有効期限が切れました", "expired": "時間内にスマートフォンで承認されませんでした。銀行の画面からもう一度操作してください。",
		"tsuperseded": "同時に別の操作があったため中止しました", "superseded": "同じお客さまの別の承認依頼が同時にあったため、両方を中止しました。もう一度お試しください。お心当たりのない操作であれば銀行にご連絡ください。",
		"tlocked": "ワンプッシュ認証はロックされています", "locked": "認証の失敗が続いたため、ロックされました。解除については銀行にお問い合わせください。",
		"nothing": "お取引は実行されていません。", "nothinglogin": "ログインは完了していません。", "sep": "",
		"request": "ご依頼の内容",

		"number": "スマートフォンのアプリに次の確認コードを入力してください：", "shown": "スマートフォンに表示される内容", "continue": "次へ",
		"timeleft": "残り時間", "auto": "承認すると、この画面は自動的に進みます。",
		"nojs": "スマートフォンで承認したら「確認する」を押してください。", "check": "確認する",
		"back":   "銀行のページへ戻る",
		"useotp": "セキュリティコードで認証する", "code": "6桁のセキュリティコード", "submitotp": "コードで確認する",
		"resend": "もう一度通知を送る", "cancel": "取り消す", "ref": "受付番号",
		"badcode": "セキュリティコードが正しくないか、すでに使用されています。", "resent": "スマートフォンに通知を再送しました。",
		"ratelimited": "しばらく待ってから再送してください。",

		"othersession": "この操作は、開始したときと同じログイン状態でのみ続行できます。お取引は実行されていません。",
		"offline":      "スマートフォンが圏外の場合：取引コードで認証する",
		"offlinehelp":  "アプリの「取引コード」を開き、次の3項目を表示どおりに入力してください。アプリに表示された8桁の応答を下に入力してください。",
		"challenge":    "チャレンジ番号", "response": "8桁の応答", "submitresp": "応答で確認する",
		"badresp": "応答が正しくないか、すでに使用されています。応答はここに表示されたチャレンジ番号・振込先・金額から計算されます。",
		"nokey":   "お使いのアプリは取引コードに対応していません。スマートフォンで承認するか、アプリを再登録してください。",
		"otptx":   "取引はセキュリティコードでは承認できません。振込先と金額から計算する取引コードをご利用ください。",
		"service": "サービス", "amount": "金額", "payee": "振込先", "payeename": "受取人名",
	},
}

// startInterstitial creates the challenge with the request stored in it,
// binds it to this browser by cookie, and answers with the waiting page.
func (g *Gate) startInterstitial(w http.ResponseWriter, r *http.Request, rule *policy.Rule, user *pushauth.User, ex *policy.Extraction, body []byte) error {
	tok, err := waitToken()
	if err != nil {
		return err
	}
	hdr := r.Header.Clone()
	hdr.Del("Cookie") // the replay carries the browser's cookies of that moment
	held := &pushauth.HeldRequest{Method: r.Method, URI: r.URL.RequestURI(), Host: r.Host, Header: hdr, Body: body}
	spec := g.spec(r, rule, user, ex)
	spec.CodeDigits, spec.Held, spec.BrowserHash = rule.CodeDigits, held, tokenHash(tok)
	if err := g.choosePasskey(r.Context(), rule, user, &spec); err != nil {
		return g.startFailed(w, r, rule, user, err)
	}
	c, err := g.Engine.Start(r.Context(), user, spec)
	if c != nil {
		g.note(r, "challenge_id", c.ID)
	}
	if err != nil {
		return g.startFailed(w, r, rule, user, err)
	}
	var session *string
	if m := loginMarkOf(r.Context()); m != nil {
		session = &m.session
	}
	return g.sendWaitPage(w, r, rule, c, tok, session)
}

// sendWaitPage answers with c's waiting page, bound to this browser by a
// cookie carrying tok. When a login is pending on session (non-nil), its
// mark is named by the challenge first: the login completes in a later
// request of the waiting page, which knows the challenge.
func (g *Gate) sendWaitPage(w http.ResponseWriter, r *http.Request, rule *policy.Rule, c *pushauth.Challenge, tok string, session *string) error {
	if session != nil {
		if err := g.markLogin(r.Context(), rule, waitLoginMark(*session, c)); err != nil {
			_, _ = g.Engine.Finish(context.WithoutCancel(r.Context()), c.ID, pushauth.StatusCancelled)
			return g.unavailable(w, r, rule, err)
		}
	}
	http.SetCookie(w, &http.Cookie{
		Name: WaitCookie, Value: c.ID + "." + tok, Path: g.WaitPath, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, Expires: c.ExpiresAt.Add(time.Minute),
	})
	g.renderWait(w, r, http.StatusOK, c, "", "")
	return nil
}

// waitToken is a fresh random token binding a waiting page to its browser.
func waitToken() (string, error) {
	token := make([]byte, 32)
	if _, err := rand.Read(token); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(token), nil
}

// waitLoginMark is the mark of the login stored in challenge c, started on
// session: named by the challenge, which every later request of the
// waiting page knows. abandonLogin clears it only where it is still c's.
func waitLoginMark(session string, c *pushauth.Challenge) *loginMark {
	return &loginMark{session: session, nonce: c.ID, user: c.UserKey}
}

// startFailed answers a challenge that could not be created.
func (g *Gate) startFailed(w http.ResponseWriter, r *http.Request, rule *policy.Rule, user *pushauth.User, err error) error {
	switch {
	case errors.Is(err, pushauth.ErrTooManyHeldForUser) || errors.Is(err, pushauth.ErrTooManyHeldFromIP) ||
		errors.Is(err, pushauth.ErrTooManyPending):
		g.Log.Warn("request refused", "rule", rule.Name, "user", user.Key, "reason", err.Error())
		w.Header().Set("Retry-After", "30")
		g.renderDetail(w, r, http.StatusTooManyRequests, PageBusy, "", "", retryIn(Lang(r), 30))
	case errors.Is(err, pushauth.ErrPushRateLimited):
		g.Log.Warn("request refused: push rate limit", "rule", rule.Name, "user", user.Key, "reason", err.Error())
		secs := pushauth.RetryAfterSeconds(err)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		g.renderDetail(w, r, http.StatusTooManyRequests, PageRateLimited, "", "", retryIn(Lang(r), secs))
	case errors.Is(err, pushauth.ErrDraining):
		g.Log.Info("request refused: draining", "rule", rule.Name, "user", user.Key)
		w.Header().Set("Retry-After", "5")
		g.render(w, r, http.StatusServiceUnavailable, PageDraining, "", "")
	case errors.Is(err, pushauth.ErrTooManyHeld) || errors.Is(err, pushauth.ErrPushQueueFull):
		g.Log.Warn("request refused", "rule", rule.Name, "user", user.Key, "reason", err.Error())
		g.render(w, r, http.StatusServiceUnavailable, PageBusy, "", "")
	case errors.Is(err, pushauth.ErrPasskeyRequired):
		g.Log.Info("request refused: the rule asks for a passkey and the user has none", "rule", rule.Name, "user", user.Key)
		g.passkeyRequired(w, r)
	default:
		return g.unavailable(w, r, rule, err)
	}
	return nil
}

func tokenHash(tok string) string {
	h := sha256.Sum256([]byte("onepush-wait\x00" + tok))
	return hex.EncodeToString(h[:])
}

// WaitPage is an interstitial challenge's waiting page under the gate's
// WaitPath: the page, its long poll, resend, cancel, the security-code
// fallback and the release of the stored request once approved.
type WaitPage struct{ *Gate }

// Serve answers one request of a waiting page; next receives the stored
// request when it is released.
func (p WaitPage) Serve(w http.ResponseWriter, r *http.Request, next Next) error {
	stripVerifiedHeaders(r.Header)
	return p.serveWait(w, r, next)
}

// serveWait answers the waiting page's own requests: the page itself,
// status long-polls, continue (replay), OTP, resend and cancel. Only the
// browser holding the challenge's cookie gets anything.
func (g *Gate) serveWait(w http.ResponseWriter, r *http.Request, next Next) error {
	rest := strings.TrimPrefix(r.URL.Path, g.WaitPath)
	id, action, _ := strings.Cut(rest, "/")
	c, ok := g.boundChallenge(r, id)
	if !ok {
		http.NotFound(w, r)
		return nil
	}
	post := r.Method == http.MethodPost
	switch {
	case action == "" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		g.renderWait(w, r, http.StatusOK, c, "", "")
	case action == "status" && r.Method == http.MethodGet:
		ctx, cancel := context.WithTimeout(r.Context(), longPoll)
		defer cancel()
		cur, err := g.Engine.Await(ctx, c.ID, g.clientIP(r))
		if errors.Is(err, pushauth.ErrTooManyPolls) {
			w.Header().Set("Retry-After", "2")
			writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "too many status requests; the page asks again shortly"})
			return nil
		}
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "store unavailable"})
			return nil
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": cur.Status})
	case action == "continue" && post:
		return g.replay(w, r, next, c)
	case action == "otp" && post:
		return g.waitOTP(w, r, next, c)
	case action == "ocra" && post:
		return g.waitOCRA(w, r, next, c)
	case action == "passkey" && post:
		return g.waitPasskey(w, r, next, c)
	case action == "resend" && post:
		msg := waitTexts[Lang(r)]["resent"]
		if err := g.Engine.Resend(r.Context(), c); errors.Is(err, pushauth.ErrPushRateLimited) {
			msg = waitTexts[Lang(r)]["ratelimited"]
		} else if err != nil {
			g.Log.Warn("resend failed", "challenge", c.ID, "error", err)
		}
		g.renderWait(w, r, http.StatusOK, c, msg, "")
	case action == "cancel" && post:
		cur, err := g.Engine.CancelFromBrowser(r.Context(), c.ID)
		if err != nil {
			return g.unavailable(w, r, &policy.Rule{Name: c.Rule}, err)
		}
		if cur != nil && cur.Status == pushauth.StatusApproved {
			// Approved just before the cancel: the user asked to stop, so
			// nothing is replayed; burn the replay so it never will be.
			fresh, _ := g.Engine.Store().UseJTI(r.Context(), "replay/"+c.ID, c.ExpiresAt.Add(g.Engine.Retention()))
			if fresh && c.Response != nil {
				// A password-first login approved, then cancelled: the
				// bank's session is never handed over, so it must not stand.
				if rule := g.ruleNamed(c.Rule); rule != nil {
					g.bankLogout(r, next, rule, c.Response.Header)
				}
			}
		}
		// A login cancelled before its replay never reaches the bank.
		if session, ok := g.requestSession(r); ok {
			g.abandonLogin(r.Context(), waitLoginMark(session, c))
		}
		// The cookie stays until it lapses, so a reload shows how it ended,
		// not a bare 404 (a closed challenge releases nothing) — except
		// after an approval whose replay was just burnt, which must never
		// offer Continue.
		switch {
		case cur != nil && cur.Status == pushauth.StatusApproved:
			clearWaitCookie(w, g.WaitPath)
			c.Status = pushauth.StatusCancelled
		case cur != nil:
			c = cur
		default:
			c.Status = pushauth.StatusCancelled
		}
		g.renderWait(w, r, http.StatusOK, c, "", "")
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
	return nil
}

// boundChallenge returns challenge id if this browser's cookie binds it.
func (g *Gate) boundChallenge(r *http.Request, id string) (*pushauth.Challenge, bool) {
	c, ok := g.cookieChallenge(r, WaitCookie, id)
	if !ok || (c.Held == nil && c.Response == nil) {
		return nil, false
	}
	return c, true
}

// cookieChallenge returns challenge id if the browser's cookie named
// cookie ("<id>.<token>") binds it: the token's hash is the challenge's
// BrowserHash.
func (g *Gate) cookieChallenge(r *http.Request, cookie, id string) (*pushauth.Challenge, bool) {
	ck, err := r.Cookie(cookie)
	if err != nil {
		return nil, false
	}
	cid, tok, ok := strings.Cut(ck.Value, ".")
	if !ok || cid != id || id == "" {
		return nil, false
	}
	c, err := g.Engine.Store().GetChallenge(r.Context(), id)
	if err != nil || c.BrowserHash == "" {
		return nil, false
	}
	if subtle.ConstantTimeCompare([]byte(tokenHash(tok)), []byte(c.BrowserHash)) != 1 {
		return nil, false
	}
	return c, true
}

// replay sends the stored request to the bank once, on approval, and
// returns the bank's answer to this browser. It is the only way a stored
// request is released, and it releases it only into the bank session the
// request was started in: the replay carries the cookies of the request
// asking for it, so a stolen session cookie posted here would otherwise
// make the bank execute the request for the session's owner.
func (g *Gate) replay(w http.ResponseWriter, r *http.Request, next Next, c *pushauth.Challenge) error {
	cur, err := g.Engine.Store().GetChallenge(r.Context(), c.ID)
	if err != nil {
		return g.unavailable(w, r, &policy.Rule{Name: c.Rule}, err)
	}
	session, ok := g.requestSession(r)
	if !ok || subtle.ConstantTimeCompare([]byte(sessionHashOf(session)), []byte(cur.SessionHash)) != 1 {
		g.releaseMismatch(r, cur)
		g.renderWait(w, r, http.StatusForbidden, cur, "", waitTexts[Lang(r)]["othersession"])
		return nil
	}
	if cur.Status == pushauth.StatusPending && !g.Engine.Now().Before(cur.ExpiresAt) {
		cur, _ = g.Engine.Finish(r.Context(), cur.ID, pushauth.StatusExpired)
	}
	if cur != nil && cur.Status == pushauth.StatusApproved && cur.Void(g.Engine.Now()) {
		// Approved, but not released within the 10 minutes an
		// authentication may take: void, and never released.
		cur.Status = pushauth.StatusExpired
	}
	if cur == nil || cur.Status != pushauth.StatusApproved {
		if cur != nil && cur.Status.Final() {
			// Denied, expired, cancelled or superseded: a login it was
			// will never reach the bank.
			g.abandonLogin(r.Context(), waitLoginMark(session, cur))
			clearWaitCookie(w, g.WaitPath)
		}
		g.renderWait(w, r, http.StatusConflict, cur, "", "")
		return nil
	}
	fresh, err := g.Engine.Store().UseJTI(r.Context(), "replay/"+c.ID, cur.ExpiresAt.Add(g.Engine.Retention()))
	if err != nil {
		return g.unavailable(w, r, &policy.Rule{Name: c.Rule}, err)
	}
	if !fresh {
		// Already replayed (a second tab, or the page's script racing a form
		// post): the bank's answer went to the first; send this one home.
		http.Redirect(w, r, g.Pages.Back, http.StatusSeeOther)
		return nil
	}
	if cur.Response != nil {
		return g.releaseResponse(w, r, next, g.ruleNamed(cur.Rule), cur, session)
	}
	held := cur.Held
	if held == nil {
		return fmt.Errorf("onepush: challenge %s keeps nothing to release", cur.ID)
	}
	u, err := url.ParseRequestURI(held.URI)
	if err != nil {
		return fmt.Errorf("onepush: stored request URI %q: %w", held.URI, err)
	}
	req := r.Clone(r.Context())
	req.Method = held.Method
	req.URL.Path, req.URL.RawPath, req.URL.RawQuery = u.Path, u.RawPath, u.RawQuery
	req.RequestURI = held.URI
	req.Host = held.Host
	req.Header = held.Header.Clone()
	var keep []string
	for _, ck := range r.Cookies() {
		if ck.Name != WaitCookie {
			keep = append(keep, ck.Name+"="+ck.Value)
		}
	}
	if len(keep) > 0 {
		req.Header.Set("Cookie", strings.Join(keep, "; "))
	}
	rule := g.ruleNamed(cur.Rule)
	if rule != nil && rule.Kind == policy.KindLogin {
		// The login completes in this request, on the session it was
		// started in (checked above).
		req = req.WithContext(withLoginMark(req.Context(), waitLoginMark(session, cur)))
	}
	g.Log.Info("replaying approved request", "challenge", c.ID, "user", cur.UserKey, "rule", cur.Rule, "via", cur.Via)
	return g.forward(w, req, next, held.Body, rule, cur.UserKey, cur)
}

// ruleNamed is the policy's rule called name, nil when there is none
// (the policy was changed since).
func (g *Gate) ruleNamed(name string) *policy.Rule {
	var rule *policy.Rule
	for _, rl := range g.Policy.Rules {
		if rl.Name == name {
			rule = rl
		}
	}
	return rule
}

// maxReleaseMismatches is how many releases of one stored request may be
// asked with another bank session than it was started in before its
// replay is burnt: the browser holding the waiting page is then plainly
// not working in the session the request belongs to.
const maxReleaseMismatches = 5

// releaseMismatch records a release of c asked with another bank session.
// It is audited through the refusal aggregator by challenge (each takes a
// push from the user's budget to start), so posting continue with made-up
// cookies cannot flush the audit trail; at maxReleaseMismatches the replay
// is burnt and a pending challenge cancelled, so nothing of it can reach
// the bank any more. (A login's pending mark on the session it was started
// in then lapses with its TTL: the gateway keeps only that session's hash.)
func (g *Gate) releaseMismatch(r *http.Request, c *pushauth.Challenge) {
	ctx := context.WithoutCancel(r.Context())
	ip := g.clientIP(r)
	g.Log.Warn("release refused: another bank session", "challenge", c.ID, "user", c.UserKey, "rule", c.Rule, "client_ip", ip)
	g.Engine.RecordAggregated(ctx, pushauth.AuditEvent{Type: pushauth.AuditSuspicious, User: c.UserKey, Credential: c.CredentialID, Challenge: c.ID,
		Rule: c.Rule, ClientIP: ip, Outcome: "session_mismatch", Actor: "browser",
		Detail:  "release asked with another bank session than the request was started in; nothing forwarded",
		Service: c.Service, Host: c.Host}, "mismatch\x00"+c.ID)
	until := c.ExpiresAt.Add(g.Engine.Retention())
	for i := range maxReleaseMismatches {
		fresh, err := g.Engine.Store().UseJTI(ctx, "release-mismatch/"+c.ID+"/"+strconv.Itoa(i), until)
		if err != nil {
			g.Engine.StoreFailed("use_jti", err)
			return
		}
		if fresh {
			return
		}
	}
	burnt, err := g.Engine.Store().UseJTI(ctx, "replay/"+c.ID, until)
	if err != nil {
		g.Engine.StoreFailed("use_jti", err)
		return
	}
	if c.Status == pushauth.StatusPending {
		_, _ = g.Engine.Finish(ctx, c.ID, pushauth.StatusCancelled)
	}
	if burnt {
		g.Log.Warn("stored request burnt after repeated releases with another bank session", "challenge", c.ID, "user", c.UserKey)
		g.Engine.Record(ctx, pushauth.AuditEvent{Type: pushauth.AuditSuspicious, User: c.UserKey, Credential: c.CredentialID, Challenge: c.ID,
			Rule: c.Rule, ClientIP: ip, Outcome: "replay_burnt", Actor: "gateway", Service: c.Service, Host: c.Host,
			Detail: fmt.Sprintf("%d releases asked with another bank session; the stored request will never be forwarded", maxReleaseMismatches)})
	}
}

// waitOTP approves with the security code instead of the push; a wrong
// code counts toward the lock.
func (g *Gate) waitOTP(w http.ResponseWriter, r *http.Request, next Next, c *pushauth.Challenge) error {
	if done, err := g.fallbackForm(w, r, next, c); done {
		return err
	}
	if c.Transaction != nil || c.Kind == string(policy.KindTransaction) {
		// A plain security code is not tied to amount or payee (PSD2 RTS
		// art. 5): it approves logins only. Refused, not counted.
		g.renderWait(w, r, http.StatusBadRequest, c, "", waitTexts[Lang(r)]["otptx"])
		return nil
	}
	cred, err := g.Engine.Store().GetCredential(r.Context(), c.CredentialID)
	if err != nil {
		g.renderWait(w, r, http.StatusConflict, c, "", waitTexts[Lang(r)]["badcode"])
		return nil
	}
	ok, err := g.Engine.CheckCode(r.Context(), cred, r.PostForm.Get("code"))
	switch {
	case errors.Is(err, pushauth.ErrCodeUsed):
		// Refused, not counted: a used code is no guess (her retry of a
		// code a store error burnt must not lock her).
		g.renderWait(w, r, http.StatusBadRequest, c, "", waitTexts[Lang(r)]["badcode"])
		return nil
	case err != nil:
		// The store could not record the use: no answer about the code,
		// so no failure is counted.
		return g.unavailable(w, r, &policy.Rule{Name: c.Rule}, err)
	}
	if !ok {
		g.Log.Info("wrong security code on the waiting page", "challenge", c.ID, "user", c.UserKey)
		g.wrongFallback(w, r, c, waitTexts[Lang(r)]["badcode"])
		return nil
	}
	return g.approveFallback(w, r, next, c)
}

// fallbackForm reads the form of a fallback post (security code or
// transaction response); done when the request is answered: a bad form,
// or a challenge no longer pending (then the release decides).
func (g *Gate) fallbackForm(w http.ResponseWriter, r *http.Request, next Next, c *pushauth.Challenge) (bool, error) {
	r.Body = http.MaxBytesReader(w, r.Body, 1024)
	if err := r.ParseForm(); err != nil {
		g.render(w, r, http.StatusBadRequest, PageBadRequest, "", "")
		return true, nil
	}
	if c.Status != pushauth.StatusPending || !g.Engine.Now().Before(c.ExpiresAt) {
		return true, g.replay(w, r, next, c)
	}
	if c.Method == pushauth.MethodPasskey {
		// A code can be relayed by a phishing site; a passkey cannot.
		g.render(w, r, http.StatusBadRequest, PageBadRequest, "", "")
		return true, nil
	}
	return false, nil
}

// wrongFallback counts a wrong code or response toward the lock: the
// locked page once it locks (the challenge is closed), else the waiting
// page with msg.
func (g *Gate) wrongFallback(w http.ResponseWriter, r *http.Request, c *pushauth.Challenge, msg string) {
	if g.Engine.CountFailure(r.Context(), c.UserKey, "wrong security code") {
		_, _ = g.Engine.Store().Resolve(r.Context(), c.ID, pushauth.StatusDenied, false, g.Engine.Now())
		g.note(r, "outcome", PageLocked)
		c.Status = pushauth.StatusDenied
		g.renderWait(w, r, http.StatusForbidden, c, "", "")
		return
	}
	g.renderWait(w, r, http.StatusBadRequest, c, "", msg)
}

// approveFallback approves c from the browser (a right code or response)
// and releases it.
func (g *Gate) approveFallback(w http.ResponseWriter, r *http.Request, next Next, c *pushauth.Challenge) error {
	if _, err := g.Engine.ApproveWithCode(r.Context(), c.ID); err != nil && !errors.Is(err, pushauth.ErrConflict) {
		return g.unavailable(w, r, &policy.Rule{Name: c.Rule}, err)
	}
	return g.replay(w, r, next, c)
}

// waitOCRA approves a transaction with the offline, transaction-bound
// response (RFC 6287 OCRA, pushauth/ocra): the phone computes it from the
// challenge number, payee and amount the page shows, with the key it was
// given at registration, so it works without a network and is specific to
// that amount and payee (PSD2 RTS art. 5). Checked over the challenge's
// raw typed fields; a wrong response counts toward the lock; a response is
// accepted once.
func (g *Gate) waitOCRA(w http.ResponseWriter, r *http.Request, next Next, c *pushauth.Challenge) error {
	if done, err := g.fallbackForm(w, r, next, c); done {
		return err
	}
	t := waitTexts[Lang(r)]
	if c.OCRAChallenge == "" || c.Transaction == nil {
		g.renderWait(w, r, http.StatusBadRequest, c, "", t["badresp"])
		return nil
	}
	cred, err := g.Engine.Store().GetCredential(r.Context(), c.CredentialID)
	if err != nil {
		return g.unavailable(w, r, &policy.Rule{Name: c.Rule}, err)
	}
	key, err := ocra.ParseKey(cred.OCRAKey)
	if cred.OCRAKey == "" || err != nil {
		// Registered before transaction codes: nothing to check against.
		g.renderWait(w, r, http.StatusBadRequest, c, "", t["nokey"])
		return nil
	}
	tx := ocra.Transaction{Challenge: c.OCRAChallenge, Payee: c.Transaction.Payee, Amount: c.Transaction.Amount, Currency: c.Transaction.Currency}
	if !ocra.VerifyTransaction(key, tx, r.PostForm.Get("response")) {
		g.Log.Info("wrong transaction response on the waiting page", "challenge", c.ID, "user", c.UserKey)
		g.wrongFallback(w, r, c, t["badresp"])
		return nil
	}
	fresh, err := g.Engine.Store().UseJTI(r.Context(), "ocra/"+c.ID, c.ExpiresAt.Add(g.Engine.Retention()))
	if err != nil {
		return g.unavailable(w, r, &policy.Rule{Name: c.Rule}, err)
	}
	if !fresh {
		g.renderWait(w, r, http.StatusBadRequest, c, "", t["badresp"])
		return nil
	}
	return g.approveFallback(w, r, next, c)
}

// offlineView is what the offline fallback shows: the challenge number in
// two groups of four, the payee exactly as the bank reads it, and the
// amount grouped by thousands with its ISO 4217 code.
type offlineView struct{ Challenge, Payee, Amount string }

func offlineOf(c *pushauth.Challenge) *offlineView {
	if c.OCRAChallenge == "" || c.Transaction == nil || len(c.OCRAChallenge) != 8 {
		return nil
	}
	return &offlineView{
		Challenge: c.OCRAChallenge[:4] + " " + c.OCRAChallenge[4:],
		Payee:     c.Transaction.Payee,
		Amount:    policy.GroupThousands(c.Transaction.Amount) + " " + c.Transaction.Currency,
	}
}

func clearWaitCookie(w http.ResponseWriter, path string) {
	http.SetCookie(w, &http.Cookie{Name: WaitCookie, Value: "", Path: path, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// Waiting-page states (the template's .State): one heading and message
// each.
const (
	WaitWaiting    = "waiting"
	WaitApproved   = "approved"
	WaitDenied     = "denied"
	WaitWrongCode  = "wrongcode"
	WaitCancelled  = "cancelled"
	WaitExpired    = "expired"
	WaitSuperseded = "superseded"
	WaitLocked     = "locked"
)

// waitState is the state the waiting page shows for c: a pending challenge
// past its expiry has expired, and a denial that left the user locked
// says so.
func (g *Gate) waitState(ctx context.Context, c *pushauth.Challenge) string {
	if c == nil {
		return WaitExpired
	}
	switch c.Status {
	case pushauth.StatusPending:
		if !g.Engine.Now().Before(c.ExpiresAt) {
			return WaitExpired
		}
		return WaitWaiting
	case pushauth.StatusApproved:
		if c.Void(g.Engine.Now()) {
			return WaitExpired
		}
		return WaitApproved
	case pushauth.StatusDenied:
		if u, err := g.Engine.Store().GetUser(ctx, c.UserKey); err == nil && u.State == pushauth.UserLocked {
			return WaitLocked
		}
		if c.WrongCode() {
			return WaitWrongCode
		}
		return WaitDenied
	case pushauth.StatusCancelled:
		return WaitCancelled
	case pushauth.StatusSuperseded:
		return WaitSuperseded
	}
	return WaitExpired
}

// renderWait writes the waiting page for c in its current state; info
// replaces the state's message, errMsg is shown as an error beside it.
func (g *Gate) renderWait(w http.ResponseWriter, r *http.Request, status int, c *pushauth.Challenge, info, errMsg string) {
	lang := Lang(r)
	t := waitTexts[lang]
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	n := base64.RawStdEncoding.EncodeToString(nonce)
	state := g.waitState(r.Context(), c)
	msg := t[state]
	switch {
	case state == WaitWaiting && c.CodeDigits > 0:
		msg = t["waitingcode"]
	case state != WaitWaiting && state != WaitApproved:
		if c != nil && c.Kind == string(policy.KindLogin) {
			msg += t["sep"] + t["nothinglogin"]
		} else {
			msg += t["sep"] + t["nothing"]
		}
	}
	if info != "" {
		msg = info
	}
	pending := state == WaitWaiting
	data := map[string]any{
		"Lang": lang, "T": t, "State": state, "Title": t["t"+state], "Message": msg, "Error": errMsg,
		"Pending": pending, "Approved": state == WaitApproved, "Nonce": n, "Back": g.Pages.Back,
	}
	if c != nil {
		data["Base"] = strings.TrimSuffix(g.WaitPath, "/") + "/" + c.ID
		data["Ref"] = pushauth.Reference(c.ID)
		data["Display"] = shownFields(c.Display, lang)
		data["Service"] = c.Service
		if c.Transaction != nil {
			data["Transaction"] = shownTransaction(c.Transaction, lang)
		}
		g.passkeyWaitData(r, c, data)
	}
	if pending {
		total := c.ExpiresAt.Sub(c.CreatedAt)
		left := c.ExpiresAt.Sub(g.Engine.Now())
		data["Total"] = int(total.Round(time.Second) / time.Second)
		data["Remaining"] = int((left + time.Second - 1) / time.Second)
		data["RemainingText"] = fmt.Sprintf("%d:%02d", data["Remaining"].(int)/60, data["Remaining"].(int)%60)
		data["OTP"], data["Offline"] = g.fallbacks(r.Context(), c)
		if c.CodeDigits > 0 {
			// The code goes only to the browser holding the challenge's
			// cookie (boundChallenge), in a page nobody caches.
			data["Code"] = c.Code
		}
	}
	setPageHeaders(w.Header(), n)
	w.WriteHeader(status)
	_ = g.Pages.wait.Execute(w, data)
}

// fallbacks is what the waiting page offers instead of the push, only
// where the server would honour it: the security code for a login (never
// for a transaction: it is not bound to amount and payee), the offline
// transaction code for a transaction whose phone holds a transaction-code
// key.
func (g *Gate) fallbacks(ctx context.Context, c *pushauth.Challenge) (otp bool, offline *offlineView) {
	if c.Method == pushauth.MethodPasskey {
		return false, nil // a code can be relayed by a phishing site; a passkey cannot (fallbackForm)
	}
	if c.Transaction == nil && c.Kind != string(policy.KindTransaction) {
		return true, nil
	}
	v := offlineOf(c)
	if v == nil {
		return false, nil
	}
	cred, err := g.Engine.Store().GetCredential(ctx, c.CredentialID)
	if err != nil || cred.OCRAKey == "" {
		return false, nil
	}
	if _, err := ocra.ParseKey(cred.OCRAKey); err != nil {
		return false, nil
	}
	return false, v
}

// discardWriter swallows a response nobody will read (the bank's answer
// to the gateway's own logout call).
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header {
	if d.h == nil {
		d.h = http.Header{}
	}
	return d.h
}
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

var _ io.Writer = (*discardWriter)(nil)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
