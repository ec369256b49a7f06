package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AddrError is a --metrics value that is not HOST:PORT (a flag error: exit 2).
// Other errors from Listen are the machine's (in use, not permitted: exit 1).
type AddrError struct {
	Addr   string
	Reason string
}

func (e *AddrError) Error() string { return fmt.Sprintf("--metrics %q: %s", e.Addr, e.Reason) }

// ParseAddr checks a --metrics value: HOST:PORT with a numeric port (0 picks
// a free one) and a host that is an IP address, a name, or empty (every
// interface; the examples use 127.0.0.1).
func ParseAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return &AddrError{addr, "want HOST:PORT, e.g. 127.0.0.1:9560"}
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || strconv.FormatUint(n, 10) != port {
		return &AddrError{addr, "the port must be a number from 0 to 65535"}
	}
	if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		return &AddrError{addr, "the host must be an IP address or a host name"}
	}
	return nil
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' {
				return false
			}
		}
	}
	return true
}

// Server serves a registry at /metrics over HTTP.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan error
}

// maxInFlight bounds concurrent scrapes: each gathers every metric.
const maxInFlight = 4

// Listen binds addr (checked with ParseAddr first) and serves reg at
// /metrics until Close. Errors serving are reported through errorLog.
func Listen(addr string, reg *prometheus.Registry, errorLog func(format string, args ...any)) (*Server, error) {
	if err := ParseAddr(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            logger(errorLog),
		ErrorHandling:       promhttp.ContinueOnError, // a failed source must not hide the others
		MaxRequestsInFlight: maxInFlight,
		Timeout:             10 * time.Second,
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "adoptwatch: metrics at /metrics")
	})
	s := &Server{ln: ln, done: make(chan error, 1), srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
	}}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address bound (with the port chosen, for port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server, letting scrapes in progress finish within a second.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.srv.Close()
	}
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

type logFunc func(format string, args ...any)

func (f logFunc) Println(v ...any) { f("metrics: %s", strings.TrimSpace(fmt.Sprintln(v...))) }

func logger(f func(format string, args ...any)) promhttp.Logger {
	if f == nil {
		return nil
	}
	return logFunc(f)
}
