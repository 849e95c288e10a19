package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The bench re-executes its own binary in these roles, so that the backend,
// the bare floor server and every load client run in processes of their own
// (each with its own file-descriptor limit and its own CPU accounting).
func runRole(role string, args []string) {
	var err error
	switch role {
	case "backend":
		err = roleBackend(args)
	case "floor":
		err = roleFloor(args)
	case "load":
		err = roleLoad(args)
	case "bank":
		err = roleBank(args)
	case "phones":
		err = rolePhones(args)
	case "peak":
		err = rolePeakLoad(args)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", role, err)
		os.Exit(1)
	}
}

// listenAndAnnounce listens on a free loopback port and prints "addr <host:port>".
func listenAndAnnounce() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	fmt.Printf("addr %s\n", ln.Addr())
	return ln, nil
}

// roleBackend is the stand-in bank: every request gets a tiny 200; a login
// post also gets a fresh session cookie, and every response carries the
// wall-clock time it arrived (X-Arrived, Unix ns) for the release figure.
func roleBackend(args []string) error {
	ln, err := listenAndAnnounce()
	if err != nil {
		return err
	}
	body := []byte("ok\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived := time.Now().UnixNano()
		if r.Method == http.MethodPost {
			_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
			if r.URL.Path == "/login" {
				var b [12]byte
				_, _ = rand.Read(b[:])
				w.Header().Set("Set-Cookie", "SID="+base64.RawURLEncoding.EncodeToString(b[:])+"; Path=/; HttpOnly")
			}
		}
		w.Header().Set("X-Arrived", strconv.FormatInt(arrived, 10))
		if id := r.Header.Get("X-Onepush-Challenge"); id != "" {
			w.Header().Set("X-Challenge", id)
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "3")
		_, _ = w.Write(body)
	})
	return (&http.Server{Handler: h, ReadHeaderTimeout: time.Minute}).Serve(ln)
}

// roleFloor is the bare Go net/http server the gateway is compared with:
// POST /hold reads the body and waits until the client goes away (the
// floor for holding); POST /verify checks one ES256 JWT signed by the key
// given as -pub (the verification in the full-cycle floor); anything else
// answers like the backend; GET /memstats?gc=N reports its heap and stack
// bytes after N collections.
func roleFloor(args []string) error {
	fs := flag.NewFlagSet("floor", flag.ExitOnError)
	pubB64 := fs.String("pub", "", "base64url SPKI DER of the P-256 key that signs /verify tokens")
	_ = fs.Parse(args)
	var pub *ecdsa.PublicKey
	if *pubB64 != "" {
		der, err := base64.RawURLEncoding.DecodeString(*pubB64)
		if err != nil {
			return err
		}
		k, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			return err
		}
		pub = k.(*ecdsa.PublicKey)
	}
	ln, err := listenAndAnnounce()
	if err != nil {
		return err
	}
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience("onepush"), jwt.WithIssuedAt(), jwt.WithExpirationRequired())
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hold":
			_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
			<-r.Context().Done()
			return
		case "/memstats":
			writeMemStats(w, r)
			return
		case "/verify":
			raw, _ := io.ReadAll(io.LimitReader(r.Body, 4096))
			if pub == nil {
				http.Error(w, "no key", http.StatusInternalServerError)
				return
			}
			if _, err := parser.Parse(string(raw), func(*jwt.Token) (any, error) { return pub, nil }); err != nil {
				http.Error(w, "bad token", http.StatusUnauthorized)
				return
			}
		default:
			_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	return (&http.Server{Handler: h, ReadHeaderTimeout: time.Minute}).Serve(ln)
}

// writeMemStats answers /memstats: heap and stack bytes after ?gc=N
// collections (a collection halves a stack at most, so several reach what a
// long-running process keeps). It is its own function because
// runtime.MemStats is 5 KiB: in the handler's frame it would grow every
// held request's stack, which is what the floor measures.
//
//go:noinline
func writeMemStats(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("gc"))
	for range min(n, 5) {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(w, "%d %d\n", ms.HeapAlloc, ms.StackInuse)
}

// loadResult is what a load client in "pass" mode prints as JSON.
type loadResult struct {
	Count  int64         `json:"count"`
	Errors int64         `json:"errors"`
	Dur    time.Duration `json:"dur"`
	Hist   *hist         `json:"hist"`
}

// roleLoad is the load client. Mode "pass": a closed loop of -conc
// keep-alive connections sending GET -url for -dur, printing a loadResult.
// Mode "hold": one connection per user in [-from, -to), each sending a login
// post to -addr from one of the -src addresses and never reading the
// answer; it prints "ready sent=N failed=F", answers "report" lines on stdin
// with "answered=A", and exits (closing every connection) at stdin EOF.
func roleLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	mode := fs.String("mode", "pass", "pass or hold")
	target := fs.String("url", "", "pass: URL to GET")
	conc := fs.Int("conc", 32, "concurrent connections (pass) or dials (hold)")
	dur := fs.Duration("dur", 3*time.Second, "pass: duration")
	addr := fs.String("addr", "", "hold: host:port")
	path := fs.String("path", "/login", "hold: path to post")
	from := fs.Int("from", 0, "hold: first user index")
	to := fs.Int("to", 0, "hold: end user index (exclusive)")
	src := fs.String("src", "", "hold: comma-separated source addresses")
	_ = fs.Parse(args)
	switch *mode {
	case "pass":
		return loadPass(*target, *conc, *dur)
	case "hold":
		return loadHold(*addr, *path, *from, *to, strings.Split(*src, ","), *conc)
	}
	return fmt.Errorf("unknown mode %q", *mode)
}

func loadPass(target string, conc int, dur time.Duration) error {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	// Warm the connections up so the measurement does not include dials.
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			if resp, err := client.Get(target); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	var (
		mu     sync.Mutex
		total  = newHist()
		count  atomic.Int64
		errs   atomic.Int64
		start  = time.Now()
		cancel = start.Add(dur)
	)
	for range conc {
		wg.Go(func() {
			h := newHist()
			for time.Now().Before(cancel) {
				t0 := time.Now()
				resp, err := client.Get(target)
				if err != nil {
					errs.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs.Add(1)
					continue
				}
				h.add(time.Since(t0))
				count.Add(1)
			}
			mu.Lock()
			total.merge(h)
			mu.Unlock()
		})
	}
	wg.Wait()
	return json.NewEncoder(os.Stdout).Encode(loadResult{Count: count.Load(), Errors: errs.Load(), Dur: time.Since(start), Hist: total})
}

func loadHold(addr, path string, from, to int, srcs []string, conc int) error {
	var (
		conns    []net.Conn
		mu       sync.Mutex
		failed   atomic.Int64
		answered atomic.Int64
		wg       sync.WaitGroup
		sem      = make(chan struct{}, conc)
	)
	for i := from; i < to; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			local := &net.TCPAddr{IP: net.ParseIP(srcs[i%len(srcs)])}
			d := net.Dialer{LocalAddr: local, Timeout: 10 * time.Second}
			c, err := d.DialContext(context.Background(), "tcp", addr)
			if err != nil {
				failed.Add(1)
				return
			}
			body := "user=u" + strconv.Itoa(i) + "&password=secret"
			req := "POST " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: onepush-bench\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: " +
				strconv.Itoa(len(body)) + "\r\n\r\n" + body
			if _, err := io.WriteString(c, req); err != nil {
				failed.Add(1)
				c.Close()
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				// Any answer, or the server closing, means it is not held.
				var b [1]byte
				_, _ = c.Read(b[:])
				answered.Add(1)
			}()
		}(i)
	}
	wg.Wait()
	fmt.Printf("ready sent=%d failed=%d\n", len(conns), failed.Load())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() == "report" {
			fmt.Printf("answered=%d\n", answered.Load())
		}
	}
	for _, c := range conns {
		c.Close()
	}
	return nil
}
