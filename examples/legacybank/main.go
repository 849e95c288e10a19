// Command legacybank serves the demo "legacy" online-banking application
// (package bank) with the demo users from bank.DefaultUsers.
//
//	go run ./examples/legacybank -listen 127.0.0.1:9001
//
// The application knows nothing about onepush; put onepush (Caddy) in front
// of it. GET /ops/log and POST /ops/reset are unauthenticated test fixtures,
// so only listen on loopback or a private network.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/onepush/onepush/examples/legacybank/bank"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9001", "address to listen on")
	flag.Parse()

	users := bank.DefaultUsers()
	srv := &http.Server{
		Addr:              *listen,
		Handler:           bank.New(bank.Config{Users: users}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()

	log.Printf("legacybank listening on http://%s/", *listen)
	for _, u := range users {
		log.Printf("  demo user: contract=%s user=%s password=%s txn_password=%s", u.ContractNo, u.UserID, u.Password, u.TxnPassword)
	}
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
