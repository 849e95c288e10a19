// Command phone simulates the bank's phone app for onepush.
//
//	go run ./examples/phone -server http://127.0.0.1:8080/onepush/device/v1 \
//	    -listen 127.0.0.1:9002 -auto off -state phone.json
//
// It registers a P-256 key with the device API (or reloads key and
// credential from -state), prints the credential id and the current
// security code for the enrollment page, receives webhook pushes on
// http://<listen>/push, polls every 2 s as a fallback, and serves a page at
// http://<listen>/ with the pending prompts and Approve / Deny buttons.
// With -auto approve|deny it answers every prompt by itself.
//
// The server must allow webhook pushes to the -push-url prefix; otherwise
// use -platform none and rely on polling.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/onepush/onepush/examples/phone/device"
)

func main() {
	server := flag.String("server", "http://127.0.0.1:8080/onepush/device/v1", "device API base URL")
	listen := flag.String("listen", "127.0.0.1:9002", "address for the phone page and the push webhook")
	auto := flag.String("auto", "off", "decide prompts by itself: approve, deny, fraud or off")
	statePath := flag.String("state", "", "file keeping the device key and credential across runs (created if missing)")
	fresh := flag.Bool("fresh", false, "ignore an existing -state file and register a new credential")
	platform := flag.String("platform", "webhook", `push platform to register: "webhook" or "none" (poll only)`)
	pushURL := flag.String("push-url", "", "URL the server pushes to (default http://<listen>/push)")
	poll := flag.Duration("poll", 2*time.Second, "poll interval for GET /challenges")
	caFile := flag.String("ca", "", "PEM CA bundle to trust for an https -server (e.g. Caddy's local CA)")
	insecure := flag.Bool("insecure", false, "skip TLS verification of -server (testing only)")
	flag.Parse()

	logger := log.New(os.Stderr, "", log.LstdFlags)
	switch *auto {
	case "approve", "deny", "fraud", "off", "":
	default:
		logger.Fatalf("-auto must be approve, deny, fraud or off, not %q", *auto)
	}
	if *pushURL == "" {
		*pushURL = "http://" + *listen + "/push"
	}
	token := *pushURL
	if *platform == "none" {
		token = ""
	}

	client, err := httpClient(*caFile, *insecure)
	if err != nil {
		logger.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Listen first so a push sent right after registration finds us.
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		logger.Fatalf("listen %s: %v", *listen, err)
	}

	phone, err := loadOrRegister(ctx, logger, *server, *statePath, *fresh, *platform, token, client)
	if err != nil {
		logger.Fatal(err)
	}

	code, valid, err := phone.SecurityCodeAt(time.Now())
	if err != nil {
		logger.Fatal(err)
	}
	fmt.Printf("credential id:  %s\n", phone.CredentialID())
	fmt.Printf("security code:  %s (valid %s more; the page shows the current one)\n", code, valid)
	fmt.Printf("phone page:     http://%s/\n", ln.Addr())
	fmt.Printf("push webhook:   %s (platform %s)\n", *pushURL, *platform)

	sim := device.NewSimulator(phone, *auto, logger)
	sim.PollInterval = *poll
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Fatalf("serve: %v", err)
		}
	}()
	_ = sim.Run(ctx)
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shut)
}

func loadOrRegister(ctx context.Context, logger *log.Logger, base, statePath string, fresh bool,
	platform, token string, client *http.Client) (*device.Phone, error) {
	opts := []device.Option{device.WithHTTPClient(client)}
	if statePath != "" && !fresh {
		data, err := os.ReadFile(statePath)
		switch {
		case err == nil:
			phone, err := device.Restore(base, data, opts...)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", statePath, err)
			}
			logger.Printf("loaded credential %s from %s", phone.CredentialID(), statePath)
			if p, t := phone.PushTarget(); p != platform || t != token {
				if err := phone.UpdatePushToken(ctx, platform, token); err != nil {
					return nil, fmt.Errorf("update push token (if the server forgot this credential, rerun with -fresh): %w", err)
				}
				if err := save(phone, statePath); err != nil {
					return nil, err
				}
			} else if _, err := phone.Pending(ctx); err != nil {
				var se *device.StatusError
				if errors.As(err, &se) && se.Status == http.StatusUnauthorized {
					return nil, fmt.Errorf("server refuses the stored credential (rerun with -fresh to register anew): %w", err)
				}
				logger.Printf("warning: %v", err)
			}
			return phone, nil
		case !errors.Is(err, os.ErrNotExist):
			return nil, err
		}
	}
	phone, err := device.New(base, opts...)
	if err != nil {
		return nil, err
	}
	if err := phone.Register(ctx, platform, token); err != nil {
		return nil, err
	}
	logger.Printf("registered credential %s", phone.CredentialID())
	if statePath != "" {
		if err := save(phone, statePath); err != nil {
			return nil, err
		}
	}
	return phone, nil
}

func save(phone *device.Phone, path string) error {
	data, err := phone.MarshalState()
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func httpClient(caFile string, insecure bool) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" || insecure {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if caFile != "" {
			pemData, err := os.ReadFile(caFile)
			if err != nil {
				return nil, err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pemData) {
				return nil, fmt.Errorf("%s: no PEM certificates", caFile)
			}
			cfg.RootCAs = pool
		}
		cfg.InsecureSkipVerify = insecure //nolint:gosec // opt-in flag for local testing
		tr.TLSClientConfig = cfg
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}
