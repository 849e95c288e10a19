// Command demo runs the whole onepush story on loopback in one process: the
// unchanged legacy bank, Caddy with the onepush module in front of it, and
// a simulated phone.
//
//	go run ./examples/demo
//	go run ./examples/demo -policy examples/policy/interstitial.yaml
//
// -policy runs the gateway with another policy file (default: the
// embedded examples/policy/bank.yaml); interstitial.yaml puts transfers on
// a waiting page with code transfer as well.
//
// Caddy is configured from a Caddyfile through Caddy's own config loading,
// exactly as a bank would run it, except that the store is in memory (the
// demo keeps nothing: a bank runs the default embedded store, created with
// `caddy onepush store init`) and pushes go to the phone simulator by
// webhook. One demo user (alice) is enrolled on the simulated phone at
// start-up, through the real enrolment page; bob is not. Notifications
// (bindings, locks, fraud reports) go, signed, to a small notification
// system whose "outbox" page shows what each customer was sent.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/onepush/onepush/caddymodule"
	"github.com/onepush/onepush/examples/legacybank/bank"
	"github.com/onepush/onepush/examples/notifysink"
	"github.com/onepush/onepush/examples/phone/device"
	examplepolicy "github.com/onepush/onepush/examples/policy"
	exampletemplates "github.com/onepush/onepush/examples/templates"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "gateway (Caddy + onepush) address: open this in the browser")
	bankListen := flag.String("bank-listen", "127.0.0.1:9001", "legacy bank address (behind the gateway)")
	phoneListen := flag.String("phone-listen", "127.0.0.1:9002", "phone simulator address (its page has Approve / Deny)")
	phoneAuto := flag.String("phone-auto", "off", "phone answers by itself: approve, deny or off")
	outboxListen := flag.String("outbox-listen", "127.0.0.1:9003", "the bank's notification system: its page shows what each customer was sent")
	policyFile := flag.String("policy", "", "policy file for the gateway (default: examples/policy/bank.yaml, embedded); try examples/policy/interstitial.yaml")
	flag.Parse()
	logger := log.New(os.Stderr, "demo: ", log.LstdFlags)
	switch *phoneAuto {
	case "approve", "deny", "off":
	default:
		logger.Fatalf("-phone-auto must be approve, deny or off, not %q", *phoneAuto)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	pol := examplepolicy.Bank
	if *policyFile != "" {
		b, err := os.ReadFile(*policyFile)
		if err != nil {
			logger.Fatalf("-policy: %v", err)
		}
		pol = b
	}
	if err := run(ctx, logger, pol, *listen, *bankListen, *phoneListen, *outboxListen, *phoneAuto); err != nil {
		logger.Fatal(err)
	}
}

func run(ctx context.Context, logger *log.Logger, pol []byte, listen, bankListen, phoneListen, outboxListen, auto string) error {
	users := bank.DefaultUsers()
	bankLn, err := net.Listen("tcp", bankListen)
	if err != nil {
		return fmt.Errorf("bank listener: %w", err)
	}
	bankSrv := &http.Server{Handler: bank.New(bank.Config{Users: users}), ReadHeaderTimeout: 10 * time.Second}
	go bankSrv.Serve(bankLn)
	defer bankSrv.Close()

	phoneLn, err := net.Listen("tcp", phoneListen)
	if err != nil {
		return fmt.Errorf("phone listener: %w", err)
	}
	phoneAddr := phoneLn.Addr().String()

	// The bank's notification system, with a secret made for this run.
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	notifySecret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	outboxLn, err := net.Listen("tcp", outboxListen)
	if err != nil {
		return fmt.Errorf("outbox listener: %w", err)
	}
	outboxSrv := &http.Server{Handler: notifysink.New(notifySecret), ReadHeaderTimeout: 10 * time.Second}
	go outboxSrv.Serve(outboxLn)
	defer outboxSrv.Close()

	dir, err := os.MkdirTemp("", "onepush-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	policyPath := filepath.Join(dir, "policy.yaml")
	if bytes.Equal(pol, examplepolicy.Bank) {
		// The default demo offers alice a passkey after her first login.
		if pol, err = passkeyLogin(pol); err != nil {
			return err
		}
	}
	if err := os.WriteFile(policyPath, pol, 0o600); err != nil {
		return err
	}
	// The waiting page in the demo bank's colours, with its header and logo.
	waitTemplate := filepath.Join(dir, "wait.html")
	if err := os.WriteFile(waitTemplate, exampletemplates.WaitBranded, 0o600); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", listen, err)
	}
	caddyfile := fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
	onepush {
		store memory
		webhook_allow http://%s/
		notify {
			url http://%s/
			secret {env.ONEPUSH_DEMO_NOTIFY_SECRET}
			repudiation "If you did not do this, call the bank's 24-hour line at once: 0120-000-000."
		}
	}
}

:%s {
	bind %s
	onepush_device
	onepush {
		policy %s
		wait_template %s
%s	}
	reverse_proxy %s
}
`, phoneAddr, outboxLn.Addr().String(), port, host, policyPath, waitTemplate, passkeyBlock(port), bankLn.Addr().String())
	if err := os.Setenv("ONEPUSH_DEMO_NOTIFY_SECRET", notifySecret); err != nil {
		return err
	}
	cfgJSON, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		return fmt.Errorf("adapting the Caddyfile: %w", err)
	}
	for _, w := range warnings {
		logger.Printf("Caddyfile: %s", w.String())
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		return fmt.Errorf("starting Caddy: %w", err)
	}
	defer caddy.Stop()
	gateway := "http://" + listen

	phone, err := device.New(gateway + "/onepush/device/v1")
	if err != nil {
		return err
	}
	if err := phone.Register(ctx, "webhook", "http://"+phoneAddr+"/push"); err != nil {
		return fmt.Errorf("registering the simulated phone: %w", err)
	}
	sim := device.NewSimulator(phone, auto, logger)
	phoneSrv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	go phoneSrv.Serve(phoneLn)
	defer phoneSrv.Close()
	go sim.Run(ctx)

	alice := users[0]
	if err := Enroll(ctx, gateway, alice.ContractNo, alice.UserID, alice.Password, phone); err != nil {
		return fmt.Errorf("enrolling %s on the simulated phone: %w", alice.UserID, err)
	}

	fmt.Printf(`
onepush demo is running.

  Bank, through the gateway:  %s/
  Simulated phone:            http://%s/   (approve or deny prompts here; auto: %s)
  Bank's operations log:      %s/ops/log
  Outbox (what each customer was sent): http://%s/
  The bank directly (no gateway, for comparison): http://%s/

Demo users (contract number / user ID / password / transaction password):
`, gateway, phoneAddr, auto, gateway, outboxLn.Addr(), bankLn.Addr())
	for i, u := range users {
		note := "not enrolled: logs in with the password only"
		if i == 0 {
			note = "enrolled on the simulated phone (credential " + phone.CredentialID() + ")"
		}
		fmt.Printf("  %s / %s / %s / %s   %s\n", u.ContractNo, u.UserID, u.Password, u.TxnPassword, note)
	}
	fmt.Print(passkeyOffer(port))
	fmt.Printf("\nEnrol another user at %s/onepush/enroll after logging in (security code: the phone page). Ctrl-C stops.\n", gateway)
	<-ctx.Done()
	return nil
}

// Enroll logs userID in through the gateway (allowed: not enrolled yet),
// then binds the phone's credential with its current security code on the
// enrolment page, and logs out again: the path a real user takes.
func Enroll(ctx context.Context, gateway, contractNo, userID, password string, phone *device.Phone) error {
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := client.PostForm(gateway+"/login", url.Values{"contract_no": {contractNo}, "user_id": {userID}, "password": {password}})
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasSuffix(resp.Request.URL.Path, "/dashboard") {
		return fmt.Errorf("login: status %d at %s", resp.StatusCode, resp.Request.URL.Path)
	}
	status, body, err := phone.Enrol(ctx, client, gateway+"/onepush/enroll", nil)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("enrolment page: status %d: %s", status, body)
	}
	resp, err = client.PostForm(gateway+"/logout", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return nil
}
