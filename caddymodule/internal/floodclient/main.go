// Command floodclient posts many login forms for random users to a gateway, with a
// bounded number of connections, and prints a JSON summary of what came back. The
// flood end-to-end test runs it in its own process so that its sockets, goroutines and
// memory are not counted against the gateway or the test.
//
//	floodclient -url http://127.0.0.1:8080/login -n 20000 -c 64 -hot 1001/alice:alice-pass-1 -hot-every 20
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Summary is what the client prints on stdout.
type Summary struct {
	Requests int            `json:"requests"`
	Statuses map[string]int `json:"statuses"`
	Errors   int            `json:"errors"`
	// FirstError is one transport error, for the test's message.
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"per_second"`
}

func main() {
	target := flag.String("url", "", "login URL of the gateway")
	n := flag.Int("n", 20000, "number of login posts")
	conc := flag.Int("c", 64, "concurrent connections (bounded: every process has 20,000 open files at most)")
	hot := flag.String("hot", "", "contract/user:password of an enrolled user some posts target")
	hotEvery := flag.Int("hot-every", 20, "every n-th post targets the -hot user")
	timeout := flag.Duration("timeout", 30*time.Second, "per-request timeout")
	flag.Parse()
	if *target == "" || *n <= 0 || *conc <= 0 || *conc > 1000 {
		fmt.Fprintln(os.Stderr, "floodclient: -url is required, -n > 0, 0 < -c <= 1000")
		os.Exit(2)
	}
	var hotContract, hotUser, hotPass string
	if *hot != "" {
		cu, pw, ok := strings.Cut(*hot, ":")
		c, u, ok2 := strings.Cut(cu, "/")
		if !ok || !ok2 {
			fmt.Fprintf(os.Stderr, "floodclient: -hot %q is not contract/user:password\n", *hot)
			os.Exit(2)
		}
		hotContract, hotUser, hotPass = c, u, pw
	}

	tr := &http.Transport{MaxConnsPerHost: *conc, MaxIdleConnsPerHost: *conc, IdleConnTimeout: 30 * time.Second}
	client := &http.Client{Transport: tr, Timeout: *timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	var (
		next     atomic.Int64
		mu       sync.Mutex
		statuses = map[string]int{}
		errs     int
		firstErr string
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range *conc {
		wg.Go(func() {
			buf := make([]byte, 32<<10)
			for {
				i := next.Add(1)
				if i > int64(*n) {
					return
				}
				form := url.Values{
					"contract_no": {fmt.Sprintf("%04d", rand.IntN(10000))},
					"user_id":     {fmt.Sprintf("u%x", rand.Uint64())},
					"password":    {fmt.Sprintf("p%x", rand.Uint64())},
				}
				if hotUser != "" && *hotEvery > 0 && i%int64(*hotEvery) == 0 {
					form = url.Values{"contract_no": {hotContract}, "user_id": {hotUser}, "password": {hotPass}}
				}
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, *target, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, err := client.Do(req)
				mu.Lock()
				if err != nil {
					errs++
					if firstErr == "" {
						firstErr = err.Error()
					}
				} else {
					statuses[fmt.Sprint(resp.StatusCode)]++
				}
				mu.Unlock()
				if err == nil {
					for {
						if _, err := resp.Body.Read(buf); err != nil {
							break
						}
					}
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	out := Summary{Requests: *n, Statuses: statuses, Errors: errs, FirstError: firstErr, Seconds: secs, PerSecond: float64(*n) / secs}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}
