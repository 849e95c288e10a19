package device

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// formToken finds the enrolment page's anti-forgery token (the hidden
// form_token field of the gateway's form).
var formToken = regexp.MustCompile(`name="form_token" value="([A-Za-z0-9_-]+)"`)

// Enrol is the user binding this phone on the gateway's enrolment page
// from a PC browser (browser carries the user's cookies: the bank session,
// or the enrolment ticket of a refused login): it opens the page, types the
// phone's credential ID and current security code, and posts them with the
// page's anti-forgery token. Fields in form are added or win (another
// code, an activation_code). It returns the status and page of the post,
// or of the page itself when it offers no form.
func (p *Phone) Enrol(ctx context.Context, browser *http.Client, enrollURL string, form url.Values) (int, string, error) {
	status, page, err := browse(ctx, browser, http.MethodGet, enrollURL, nil)
	if err != nil {
		return 0, "", err
	}
	m := formToken.FindStringSubmatch(page)
	if m == nil {
		return status, page, nil
	}
	code, err := p.SecurityCode()
	if err != nil {
		return 0, "", err
	}
	post := url.Values{"credential_id": {p.CredentialID()}, "code": {code}, "form_token": {m[1]}}
	for k, v := range form {
		post[k] = v
	}
	return browse(ctx, browser, http.MethodPost, enrollURL, post)
}

func browse(ctx context.Context, c *http.Client, method, target string, form url.Values) (int, string, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return 0, "", err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("onepush device: %s %s: %w", method, target, err)
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	return resp.StatusCode, string(page), err
}
