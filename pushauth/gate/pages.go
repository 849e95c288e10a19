package gate

import (
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/onepush/onepush/policy"
	"github.com/onepush/onepush/pushauth"
)

//go:embed templates/*.html
var templateFS embed.FS

// Page names the gateway answers with. The bank may replace the template.
const (
	PageDenied      = "denied"
	PageCancelled   = "cancelled"
	PageExpired     = "expired"
	PageSuperseded  = "superseded"
	PageNoSession   = "no_session"
	PageNotEnrolled = "not_enrolled"
	PageLocked      = "locked"
	PageBadRequest  = "bad_request"
	PageTooLarge    = "too_large"
	PageUnavailable = "unavailable"
	PageBusy        = "busy"
	PageEnroll      = "enroll"
	PageEnrolled    = "enrolled"
	PageReenrol     = "reenrol"

	// Lifecycle and enrolment pages.
	PageSuspended      = "suspended"
	PageEnrollBadCode  = "enroll_bad_code"
	PageEnrollUnknown  = "enroll_unknown"
	PageEnrollBound    = "enroll_bound"
	PageEnrolledPushed = "enrolled_pushed"

	// An instance going away (see pushauth.Engine.Drain).
	PageDraining = "draining"
	// PageRateLimited answers a request refused because too many approval
	// requests went to the user's phone (push-fatigue limits); the page
	// says when to try again (Retry-After too). PageEnrollLogin answers a
	// visitor of the enrolment page who is not logged in.
	PageRateLimited = "rate_limited"
	PageEnrollLogin = "enroll_login"
)

type pageText struct{ Title, Message string }

// pageTexts holds every page in Japanese and English; the browser's
// Accept-Language picks one.
var pageTexts = map[string]map[string]pageText{
	"en": {
		PageDenied:      {"Not approved", "The request was denied on your phone. Nothing was carried out. If you did not start this, contact the bank."},
		PageCancelled:   {"Request cancelled", "The approval request was cancelled (for example, the app on your phone was uninstalled). Nothing was carried out."},
		PageExpired:     {"Approval timed out", "No approval arrived from your phone in time. Nothing was carried out. Please try again."},
		PageSuperseded:  {"Stopped: another request at the same time", "Another request for your account asked for approval while this one waited, so both were stopped: a phone cannot tell two such requests apart. Nothing was carried out. Please try again; if you did not start the other one, tell the bank."},
		PageNoSession:   {"Please log in again", "We could not tell who sent this request, so nothing was carried out. Please log in again."},
		PageNotEnrolled: {"Push authentication required", "This operation needs one-push authentication, and no phone is registered for your user. Register your phone first."},
		PageLocked:      {"Push authentication locked", "Push authentication for your user is locked after repeated failures or a fraud report. Please contact the bank to unlock it."},
		PageBadRequest:  {"Request refused", "The request could not be read unambiguously, so nothing was carried out."},
		PageTooLarge:    {"Request too large", "The request is larger than this operation allows, so nothing was carried out."},
		PageUnavailable: {"Temporarily unavailable", "Approval cannot be checked right now, so the request was not sent to the bank. Please try again in a few minutes."},
		PageBusy:        {"Too many requests waiting", "Too many requests are waiting for approval. Nothing was carried out. Please try again shortly."},
		PageEnroll:      {"Register your phone", "Open the app on your phone and enter the “App ID” it shows and the 6-digit security code it shows now."},
		PageEnrolled:    {"Phone registered", "Your phone is registered. From now on, approve logins and transactions on it."},
		PageReenrol:     {"Please register your phone again", "The grace period after your phone's registration was cancelled has ended. Register your phone again to continue."},

		// Lifecycle and enrolment.
		PageSuspended:      {"Push authentication suspended", "Push authentication for your user is suspended and the period in which the password alone is accepted has ended. Please ask the bank to resume it."},
		PageEnrollBadCode:  {"Security code not accepted", "The security code is wrong, expired or was already used. Wait for the next code in the app and enter it below."},
		PageEnrollUnknown:  {"App ID not found", "No app has this App ID. Check the ID the app shows and try again."},
		PageEnrollBound:    {"A phone is already registered", "Your user already has a registered phone. To use another phone, ask the bank for an activation code and enter it with the new phone's App ID and code."},
		PageEnrolledPushed: {"Phone registered", "Your phone is registered and a test notification was sent to it. From now on, approve logins and transactions on it."},

		PageDraining:    {"Please try again in a moment", "This server is restarting. Nothing was sent to the bank. Please send your request again in a few seconds."},
		PageRateLimited: {"Please wait before trying again", "Many approval requests were sent to your phone in a short time, so new ones are paused for your protection. Nothing was carried out. If you did not make these requests, contact the bank."},
		PageEnrollLogin: {"Please log in first", "To register your phone, log in to online banking first, then open this page again."},
	},
	"ja": {
		PageDenied:      {"承認されませんでした", "スマートフォンで拒否されました。お取引は実行されていません。お心当たりがない場合は銀行にご連絡ください。"},
		PageCancelled:   {"承認依頼は取り消されました", "承認依頼が取り消されました（スマートフォンのアプリがアンインストールされた場合など）。お取引は実行されていません。"},
		PageExpired:     {"承認の有効期限が切れました", "時間内にスマートフォンからの承認がありませんでした。お取引は実行されていません。もう一度お試しください。"},
		PageSuperseded:  {"同時に別の操作があったため中止しました", "この操作の承認待ちの間に、同じ利用者で別の承認依頼があったため、両方を中止しました（スマートフォンでは二つを見分けられないためです）。お取引は実行されていません。もう一度お試しください。心当たりのない操作であれば銀行にご連絡ください。"},
		PageNoSession:   {"再度ログインしてください", "操作した利用者を確認できなかったため、お取引は実行されていません。再度ログインしてください。"},
		PageNotEnrolled: {"ワンプッシュ認証が必要です", "この操作にはワンプッシュ認証が必要ですが、利用者にスマートフォンが登録されていません。先に利用登録を行ってください。"},
		PageLocked:      {"ワンプッシュ認証はロックされています", "認証の失敗が続いたか不正の報告があったため、ロックされています。解除については銀行にお問い合わせください。"},
		PageBadRequest:  {"受け付けできません", "内容を一意に読み取れなかったため、お取引は実行されていません。"},
		PageTooLarge:    {"データが大きすぎます", "この操作で受け付けられる大きさを超えているため、お取引は実行されていません。"},
		PageUnavailable: {"ただいま利用できません", "承認を確認できないため、お取引は実行されていません。しばらくしてからもう一度お試しください。"},
		PageBusy:        {"承認待ちが混み合っています", "承認待ちの操作が多いため、お取引は実行されていません。しばらくしてからお試しください。"},
		PageEnroll:      {"ワンプッシュ認証 利用登録", "スマートフォンのアプリを開き、表示されている「アプリID」と、いま表示されている6桁のセキュリティコードを入力してください。"},
		PageEnrolled:    {"利用登録が完了しました", "今後のログインと取引は、このスマートフォンで承認してください。"},
		PageReenrol:     {"再度の利用登録が必要です", "登録解除後の猶予期間が終了しました。引き続きご利用いただくには、改めて利用登録を行ってください。"},

		// Lifecycle and enrolment.
		PageSuspended:      {"ワンプッシュ認証は一時停止中です", "ワンプッシュ認証が一時停止されており、パスワードのみでご利用いただける期間が終了しました。再開については銀行にお問い合わせください。"},
		PageEnrollBadCode:  {"セキュリティコードが正しくありません", "セキュリティコードが誤っているか、有効期限切れ、または使用済みです。アプリに次のコードが表示されてから、もう一度入力してください。"},
		PageEnrollUnknown:  {"アプリIDが見つかりません", "このアプリIDは見つかりませんでした。アプリに表示されているIDをご確認のうえ、もう一度入力してください。"},
		PageEnrollBound:    {"スマートフォンは登録済みです", "この利用者にはすでにスマートフォンが登録されています。別のスマートフォンを使う場合は、銀行でアクティベーションコードを受け取り、新しいスマートフォンのアプリIDとコードとともに入力してください。"},
		PageEnrolledPushed: {"利用登録が完了しました", "スマートフォンを登録し、確認の通知を送信しました。今後のログインと取引は、このスマートフォンで承認してください。"},

		PageDraining:    {"しばらくしてからもう一度お試しください", "サーバーの再起動中です。銀行への送信は行われていません。数秒後にもう一度操作してください。"},
		PageRateLimited: {"しばらくお待ちください", "短い時間にスマートフォンへの承認依頼が続いたため、お客さま保護のため新しい依頼を一時的に止めています。お取引は実行されていません。お心当たりのない依頼であれば銀行にご連絡ください。"},
		PageEnrollLogin: {"先にログインしてください", "スマートフォンの利用登録は、インターネットバンキングにログインしてから、このページを開き直して行ってください。"},
	},
}

var uiLabels = map[string]map[string]string{
	"en": {"retry": "You can try again in about %s.", "ref": "Reference", "back": "Back to the bank", "cred": "App ID (shown in the app)", "code": "Security code", "submit": "Register"},
	"ja": {"retry": "約%s後にもう一度お試しください。", "ref": "受付番号", "back": "銀行のページへ戻る", "cred": "アプリID（アプリに表示）", "code": "セキュリティコード", "submit": "登録する"},
}

// Pages renders the gateway's own pages.
type Pages struct {
	tmpl *template.Template
	// wait is the interstitial waiting page (templates/wait.html unless the
	// bank supplies its own with LoadWaitTemplate).
	wait *template.Template
	// passkeys is the passkey registration page (templates/passkeys.html).
	passkeys *template.Template
	// Back is the link offered on every page (the bank's start page).
	Back string
}

// NewPages parses the embedded template, or the bank's own when path is set.
func NewPages(path, back string) (*Pages, error) {
	var t *template.Template
	var err error
	if path != "" {
		t, err = template.ParseFiles(path)
	} else {
		t, err = template.ParseFS(templateFS, "templates/page.html")
	}
	if err != nil {
		return nil, err
	}
	if back == "" {
		back = "/"
	}
	wait, err := template.ParseFS(templateFS, "templates/wait.html", "templates/passkey.html")
	if err != nil {
		return nil, err
	}
	passkeys, err := template.ParseFS(templateFS, "templates/passkeys.html")
	if err != nil {
		return nil, err
	}
	return &Pages{tmpl: t, wait: wait, passkeys: passkeys, Back: back}, nil
}

// LoadWaitTemplate replaces the waiting page with the bank's own
// html/template file (docs/templates.md lists the fields it gets). A file
// that only defines blocks ({{define "header"}}…, also "head", "fields",
// "fallback", "footer") keeps the built-in page around them; a file with
// a page of its own replaces it whole (its inline script must then carry
// nonce="{{.Nonce}}" to run under the page's CSP).
func (p *Pages) LoadWaitTemplate(path string) error {
	base, err := p.wait.Clone()
	if err != nil {
		return err
	}
	t, err := base.ParseFiles(path)
	if err != nil {
		return err
	}
	if own := t.Lookup(filepath.Base(path)); own != nil && own != t && own.Tree != nil && strings.TrimSpace(own.Tree.Root.String()) != "" {
		t = own
	}
	p.wait = t
	return nil
}

// setPageHeaders marks a gateway page: never cached, never framed, no
// external assets; scriptNonce allows the one inline script of a page.
func setPageHeaders(h http.Header, scriptNonce string) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	csp := "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
	if scriptNonce != "" {
		csp += "; script-src 'nonce-" + scriptNonce + "'; connect-src 'self'"
	}
	h.Set("Content-Security-Policy", csp)
}

// Lang picks "ja" or "en" from Accept-Language: the first of the two named,
// English otherwise.
func Lang(r *http.Request) string { return policy.Language(r.Header.Get("Accept-Language")) }

// Render writes page name with status; ref (a challenge ID) is shown as
// its reference number (pushauth.Reference) for support calls. form is
// optional trusted HTML.
func (p *Pages) Render(w http.ResponseWriter, r *http.Request, status int, name, ref string, form template.HTML) {
	p.render(w, r, status, name, ref, form, "")
}

// render is Render with detail, a sentence of plain text shown under the
// message (when to try again).
func (p *Pages) render(w http.ResponseWriter, r *http.Request, status int, name, ref string, form template.HTML, detail string) {
	lang := Lang(r)
	txt := pageTexts[lang][name]
	setPageHeaders(w.Header(), "")
	w.WriteHeader(status)
	_ = p.tmpl.Execute(w, map[string]any{
		"Lang": lang, "Page": name, "Title": txt.Title, "Message": txt.Message, "Detail": detail, "Form": form,
		"Back": p.Back, "BackLabel": uiLabels[lang]["back"], "Ref": pushauth.Reference(ref), "RefLabel": uiLabels[lang]["ref"],
	})
}

// render answers with a page. A refusal (no form to fill in) is left to the
// caller when it takes it (TakeRefusal); its page names the outcome.
func (g *Gate) render(w http.ResponseWriter, r *http.Request, status int, page, ref string, form template.HTML) {
	g.renderDetail(w, r, status, page, ref, form, "")
}

// renderDetail is render with a sentence of detail under the message.
func (g *Gate) renderDetail(w http.ResponseWriter, r *http.Request, status int, page, ref string, form template.HTML, detail string) {
	if status >= 400 && form == "" {
		g.note(r, "outcome", page)
		if g.TakeRefusal != nil && g.TakeRefusal(r, status) {
			return
		}
	}
	g.Pages.render(w, r, status, page, ref, form, detail)
}

// retryIn is when to try again, in the page's words: seconds under two
// minutes, else minutes rounded up.
func retryIn(lang string, seconds int) string {
	n, unit := seconds, map[string]string{"en": " seconds", "ja": "秒"}[lang]
	if seconds >= 120 {
		n, unit = (seconds+59)/60, map[string]string{"en": " minutes", "ja": "分"}[lang]
	}
	return fmt.Sprintf(uiLabels[lang]["retry"], strconv.Itoa(n)+unit)
}

// note tells Note what the gate learnt about r.
func (g *Gate) note(r *http.Request, key, value string) {
	if g.Note != nil {
		g.Note(r, key, value)
	}
}
