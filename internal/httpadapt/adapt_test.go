package httpadapt

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"

	"github.com/nocrd/nocrd/internal/lazydeadline"
	"github.com/nocrd/nocrd/internal/rawio"
	"github.com/nocrd/nocrd/internal/testcert"
)

func TestMain(m *testing.M) {
	peerCheckEvery = 20 * time.Millisecond
	goleak.VerifyTestMain(m,
		// fasthttp's idle workers and its clock outlive a server.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/nocrd/nocrd/internal/clock.advance"))
}

// eventStream is a handler that opens an event stream, sends one comment
// and then waits, as an MCP stream with nothing to say does, until its
// request's context ends; ended is closed then.
type eventStream struct{ ended chan struct{} }

func (e eventStream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer close(e.ended)
	w.Header().Set("Content-Type", "text/event-stream")
	_, _ = io.WriteString(w, ": hello\n\n")
	w.(http.Flusher).Flush()
	<-r.Context().Done()
}

// serveAdapter serves h through an Adapter on loopback, with the
// listener wrappers nocrd's front door uses, over TLS when tlsConfig is
// set; it returns the address.
func serveAdapter(t *testing.T, h http.Handler, tlsConfig *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := New(h, nil, 0)
	srv := &fasthttp.Server{Handler: a.ServeFastHTTP, StreamRequestBody: true}
	var l net.Listener = lazydeadline.Listen(rawio.Listen(ln), 0)
	if tlsConfig != nil {
		l = tls.NewListener(l, tlsConfig)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() { a.Close(); _ = srv.Shutdown(); <-done })
	return ln.Addr().String()
}

// openStream sends a GET on c and reads until the stream's first event.
func openStream(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := io.WriteString(c, "GET /events HTTP/1.1\r\nHost: nocrd\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		if strings.Contains(line, ": hello") {
			return
		}
	}
}

// TestClientGoneEndsHandler: a client that closes its connection while the
// handler waits ends the handler's context, as net/http does, over plain
// TCP and over TLS (whose close_notify comes before the FIN); one that
// stays does not.
func TestClientGoneEndsHandler(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "tcp"
		var serverTLS, clientTLS *tls.Config
		if useTLS {
			name = "tls"
			pair := testcert.New(t, 1)
			serverTLS, clientTLS = pair.ServerConfig(), pair.ClientConfig()
		}
		t.Run(name, func(t *testing.T) {
			h := eventStream{ended: make(chan struct{})}
			addr := serveAdapter(t, h, serverTLS)
			var c net.Conn
			var err error
			if useTLS {
				c, err = tls.Dial("tcp", addr, clientTLS)
			} else {
				c, err = net.Dial("tcp", addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			openStream(t, c)
			select {
			case <-h.ended:
				t.Fatal("the handler ended while its client was still there")
			case <-time.After(20 * peerCheckEvery):
			}
			_ = c.Close()
			select {
			case <-h.ended:
			case <-time.After(5 * time.Second):
				t.Fatal("the handler still runs 5 s after its client closed the connection")
			}
		})
	}
}
