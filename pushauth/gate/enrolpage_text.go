package gate

// Pages of the enrolment page's refusals, merged into pageTexts and
// uiLabels.
const (
	PageEnrollActivation    = "enroll_activation"
	PageEnrollBadActivation = "enroll_bad_activation"
	PageEnrollNotConfirmed  = "enroll_not_confirmed"
	PageEnrollSupport       = "enroll_support"
	PageEnrollForged        = "enroll_forged"
	PageEnrollBusy          = "enroll_busy"
)

func init() {
	texts := map[string]map[string]pageText{
		"en": {
			PageEnrollActivation:    {"Activation code needed", "A phone is or was registered for your user, so registering this phone needs the activation code the bank gives you at a branch, on a call or by post. Nothing was changed. If you did not try to register a phone, contact the bank."},
			PageEnrollBadActivation: {"Activation code not accepted", "The activation code is wrong, has expired or was already used. Nothing was changed. Wrong codes count toward locking push authentication; ask the bank for a new code if needed."},
			PageEnrollNotConfirmed:  {"Login not confirmed", "Registering a phone needs a login the bank confirmed, or an activation code from the bank. Log in again, or enter the activation code. Nothing was changed."},
			PageEnrollSupport:       {"Registration by the bank only", "A phone for your user can only be registered by the bank's staff. Please contact the bank. Nothing was changed."},
			PageEnrollForged:        {"Form not accepted", "The registration form was out of date or was sent from another site, so nothing was changed. Open the registration page again from the bank's site."},
			PageEnrollBusy:          {"Too many attempts", "There were too many registration attempts. Nothing was changed. Please try again later."},
		},
		"ja": {
			PageEnrollActivation:    {"アクティベーションコードが必要です", "この利用者にはスマートフォンが登録されている（または登録されていた）ため、新しいスマートフォンの登録には、窓口・電話・郵送で銀行からお渡しするアクティベーションコードが必要です。登録は行われていません。お心当たりがない場合は銀行にご連絡ください。"},
			PageEnrollBadActivation: {"アクティベーションコードが正しくありません", "アクティベーションコードが誤っているか、有効期限切れ、または使用済みです。登録は行われていません。誤りが続くとロックされます。必要に応じて銀行に新しいコードをご依頼ください。"},
			PageEnrollNotConfirmed:  {"ログインを確認できません", "スマートフォンの登録には、銀行が確認したログイン、または銀行からのアクティベーションコードが必要です。もう一度ログインするか、アクティベーションコードを入力してください。登録は行われていません。"},
			PageEnrollSupport:       {"銀行での登録が必要です", "この利用者のスマートフォンは銀行の担当者のみが登録できます。銀行にお問い合わせください。登録は行われていません。"},
			PageEnrollForged:        {"受け付けできません", "登録フォームの有効期限が切れているか、他のサイトから送信されたため、登録は行われていません。銀行のサイトから登録画面を開き直してください。"},
			PageEnrollBusy:          {"試行回数が多すぎます", "登録の試行が多すぎます。登録は行われていません。しばらくしてからお試しください。"},
		},
	}
	labels := map[string]map[string]string{
		"en": {"actcode": "Activation code from the bank", "actcode_optional": "Activation code from the bank (if you were given one)"},
		"ja": {"actcode": "銀行からのアクティベーションコード", "actcode_optional": "銀行からのアクティベーションコード（お持ちの場合）"},
	}
	for lang, m := range texts {
		for k, v := range m {
			pageTexts[lang][k] = v
		}
		for k, v := range labels[lang] {
			uiLabels[lang][k] = v
		}
	}
}
