package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/websocket"

	"github.com/nocrd/nocrd/proxy"
)

// pattern is an endless, cheap, deterministic byte source.
type pattern struct{ n int64 }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(p.n % 251)
		p.n++
	}
	return len(b), nil
}

// TestStreamsLargeBodies sends 1 GiB up and 1 GiB down through the proxy
// and checks that nobody in the process (client, proxy, backend) allocated
// anything near that: bodies are streamed, never held whole.
func TestStreamsLargeBodies(t *testing.T) {
	const size = 1 << 30
	srv := &fasthttp.Server{
		StreamRequestBody: true,
		Handler: func(ctx *fasthttp.RequestCtx) {
			switch string(ctx.Path()) {
			case "/upload":
				n, err := io.Copy(io.Discard, ctx.RequestBodyStream())
				if err != nil {
					ctx.Error(err.Error(), 500)
					return
				}
				fmt.Fprintf(ctx, "%d", n)
			case "/download":
				ctx.SetBodyStream(io.LimitReader(&pattern{}, size), size)
			}
		},
	}
	addr := serve(t, srv)
	base, _ := startProxy(t, staticResolver{"big": {Addr: addr}}, proxy.Options{})
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}

	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	req, _ := http.NewRequest(http.MethodPost, base+"/route/big/upload", io.LimitReader(&pattern{}, size))
	req.ContentLength = size
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != fmt.Sprint(size) {
		t.Fatalf("upload: %d %s", resp.StatusCode, got)
	}

	resp, err = client.Get(base + "/route/big/download")
	if err != nil {
		t.Fatal(err)
	}
	want := &pattern{}
	buf, wbuf := make([]byte, 64<<10), make([]byte, 64<<10)
	var n int64
	for {
		k, err := resp.Body.Read(buf)
		if k > 0 {
			_, _ = want.Read(wbuf[:k])
			if string(buf[:k]) != string(wbuf[:k]) {
				t.Fatalf("download corrupted near byte %d", n)
			}
			n += int64(k)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	resp.Body.Close()
	if n != size {
		t.Fatalf("download: %d bytes, want %d", n, size)
	}

	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Fatalf("moving 2 GiB allocated %d MiB in total: something buffers bodies", alloc>>20)
	} else {
		t.Logf("moving 2 GiB allocated %.1f MiB in total", float64(alloc)/(1<<20))
	}
}

// TestServerSentEventsFlow: each event reaches the client while the
// backend is still holding the stream open, before the next is written.
func TestServerSentEventsFlow(t *testing.T) {
	next := make(chan struct{})
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			for i := range 3 {
				fmt.Fprintf(w, "data: event %d\n\n", i)
				if w.Flush() != nil {
					return
				}
				select {
				case <-next:
				case <-time.After(5 * time.Second):
					return
				}
			}
		})
	}}
	addr := serve(t, srv)
	base, _ := startProxy(t, staticResolver{"sse": {Addr: addr}}, proxy.Options{UpstreamTimeout: 10 * time.Second})
	resp, err := http.Get(base + "/route/sse/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	for i := range 3 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if want := fmt.Sprintf("data: event %d\n", i); line != want {
			t.Fatalf("got %q, want %q", line, want)
		}
		_, _ = r.ReadString('\n')
		next <- struct{}{} // only now may the backend write the next event
	}
}

// TestWebSocketEcho upgrades through the proxy and echoes messages both
// ways; the token query parameter does not reach the workspace.
func TestWebSocketEcho(t *testing.T) {
	gotURI := make(chan string, 1)
	mux := http.NewServeMux()
	mux.Handle("/ws", websocket.Handler(func(c *websocket.Conn) {
		gotURI <- c.Request().RequestURI
		for {
			var msg string
			if websocket.Message.Receive(c, &msg) != nil || websocket.Message.Send(c, msg) != nil {
				return
			}
		}
	}))
	base, p := startProxy(t, staticResolver{"ws": {Addr: wsServer(t, mux)}}, proxy.Options{})
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/route/ws/ws?x=1"
	cfg, _ := websocket.NewConfig(wsURL, base)
	c, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"hello", strings.Repeat("x", 100000), "bye"} {
		if err := websocket.Message.Send(c, msg); err != nil {
			t.Fatal(err)
		}
		var echo string
		if err := websocket.Message.Receive(c, &echo); err != nil {
			t.Fatal(err)
		}
		if echo != msg {
			t.Fatalf("echo of %d bytes came back as %d bytes", len(msg), len(echo))
		}
	}
	if uri := <-gotURI; uri != "/ws?x=1" {
		t.Fatalf("backend saw %q", uri)
	}
	_ = c.Close()
	_ = p
}

// TestHeadKeepsContentLength: a HEAD answer carries the workspace's
// Content-Length and no body.
func TestHeadKeepsContentLength(t *testing.T) {
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString(strings.Repeat("b", 1234)) }}
	addr := serve(t, srv)
	base, _ := startProxy(t, staticResolver{"h": {Addr: addr}}, proxy.Options{})
	resp, err := http.Head(base + "/route/h/file")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != 1234 {
		t.Fatalf("HEAD: %d, Content-Length %d, want 200 and 1234", resp.StatusCode, resp.ContentLength)
	}
}
