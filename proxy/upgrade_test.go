package proxy_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nocrd/nocrd/proxy"
)

const wsHandshake = "GET /route/a/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
	"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

// TestRefusedUpgradeIsNotTunnelled: when the workspace answers an upgrade
// request with anything but 101, the client gets that answer and the
// connection stays HTTP, every later request on it checked by the proxy as
// any other. Tunnelling it blindly would let a client send requests
// straight to the workspace, past authentication, the route policies and
// the proxy's header rewriting: here, with no token and a forged subject
// header.
func TestRefusedUpgradeIsNotTunnelled(t *testing.T) {
	addr, hits := backend(t) // answers everything with 200
	base, _ := startProxy(t, staticResolver{"a": {Addr: addr, Owner: "alice"}},
		proxy.Options{Authorizer: hs256Verifier(t), SubjectHeader: "X-Forwarded-User"})
	conn := dialProxy(t, base)
	br := bufio.NewReader(conn)

	alice := token(t, "s3cret", "alice", time.Hour)
	if _, err := io.WriteString(conn, wsHandshake+"Authorization: Bearer "+alice+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	var s seen
	if resp.StatusCode != 200 || json.Unmarshal(body, &s) != nil || s.URI != "/ws" || s.Header["X-Forwarded-User"] != "alice" {
		t.Fatalf("handshake answered %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Backend-Private") != "" {
		t.Errorf("the answer kept a header its Connection named: %v", resp.Header)
	}

	before := hits.Load()
	if _, err := io.WriteString(conn, "GET /route/a/next HTTP/1.1\r\nHost: x\r\nX-Forwarded-User: alice\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized || hits.Load() != before {
		t.Fatalf("a request without a token after a refused upgrade: %d %s (the workspace saw %d more)", resp.StatusCode, body, hits.Load()-before)
	}
}

// TestUpgradeAnswerPassesWhole: a workspace that speaks first after its
// 101 (its first bytes arrive with the answer's head) has them reach the
// client, and the connection then carries bytes both ways.
func TestUpgradeAnswerPassesWhole(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		if _, err := http.ReadRequest(r); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello\n")
		line, _ := r.ReadString('\n')
		_, _ = io.WriteString(c, "echo "+line)
	}()
	base, _ := startProxy(t, staticResolver{"a": {Addr: l.Addr().String()}}, proxy.Options{})
	conn := dialProxy(t, base)
	if _, err := io.WriteString(conn, wsHandshake+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") ||
		!strings.EqualFold(resp.Header.Get("Connection"), "upgrade") {
		t.Fatalf("answer %d %v", resp.StatusCode, resp.Header)
	}
	if line, err := br.ReadString('\n'); line != "hello\n" {
		t.Fatalf("first bytes %q (%v)", line, err)
	}
	_, _ = io.WriteString(conn, "ping\n")
	if line, err := br.ReadString('\n'); line != "echo ping\n" {
		t.Fatalf("echo %q (%v)", line, err)
	}
}

// TestUpgradeWithBodyRefused: a handshake is a GET without a body; one
// that declares a body is refused rather than sent with a Content-Length
// whose body the workspace would then take from the tunnel.
func TestUpgradeWithBodyRefused(t *testing.T) {
	addr, hits := backend(t)
	base, _ := startProxy(t, staticResolver{"a": {Addr: addr}}, proxy.Options{})
	for _, framing := range []string{"Content-Length: 4\r\n\r\nbody", "Transfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n"} {
		conn := dialProxy(t, base)
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(conn, wsHandshake+framing)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Errorf("%q: %v", framing, err)
			conn.Close()
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "body") {
			t.Errorf("%q: %d %s", framing, resp.StatusCode, body)
		}
	}
	if hits.Load() != 0 {
		t.Errorf("the workspace saw %d requests", hits.Load())
	}
}

// TestOtherUpgradesAreIgnored: an upgrade to anything but WebSocket is a
// request like any other, its Upgrade and Connection headers hop-by-hop,
// as RFC 9110 lets a server ignore an upgrade it does not take. curl
// --http2 asks for h2c this way on every plain-HTTP request; refusing it
// would refuse curl.
func TestOtherUpgradesAreIgnored(t *testing.T) {
	addr, _ := backend(t)
	base, _ := startProxy(t, staticResolver{"a": {Addr: addr}}, proxy.Options{})
	s := rawSeen(t, base, "GET /route/a/page HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n")
	for _, h := range []string{"Upgrade", "Connection", "Http2-Settings"} {
		if v, ok := s.Header[h]; ok {
			t.Errorf("the workspace saw %s: %q", h, v)
		}
	}
	if s.URI != "/page" {
		t.Errorf("the workspace saw %q", s.URI)
	}
}

// TestTunnelEnds: a tunnel ends on the client's side when the workspace's
// side ends (a workspace that crashes sends no WebSocket close frame: the
// client must see its connection end), and Proxy.Close ends a tunnel
// whose client and workspace are both silent.
func TestTunnelEnds(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	hangUp := make(chan struct{})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
				if _, err := io.ReadFull(c, make([]byte, 1)); err != nil { // "h": hang up now
					return
				}
				<-hangUp
			}()
		}
	}()
	base, p := startProxy(t, staticResolver{"a": {Addr: l.Addr().String()}}, proxy.Options{})
	tunnel := func() (net.Conn, *bufio.Reader) {
		conn := dialProxy(t, base)
		_, _ = io.WriteString(conn, wsHandshake+"\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("handshake: %v %v", resp, err)
		}
		return conn, br
	}
	ended := func(what string, conn net.Conn, br *bufio.Reader) {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := br.ReadByte(); err == nil || isTimeout(err) {
			t.Errorf("%s: the client's connection did not end (%v)", what, err)
		}
	}

	conn, br := tunnel()
	_, _ = io.WriteString(conn, "h")
	close(hangUp) // the workspace closes its end
	ended("the workspace hung up", conn, br)

	conn, br = tunnel()
	time.Sleep(100 * time.Millisecond) // the tunnel is up and silent
	p.Close()
	ended("Proxy.Close", conn, br)
}

// TestCloseEndsHTTP10Stream: Proxy.Close ends an answer of unknown length
// streamed to an HTTP/1.0 client from a hijacked connection, as it ends
// tunnels.
func TestCloseEndsHTTP10Stream(t *testing.T) {
	addr := serveRaw(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\n")
		_, _ = io.ReadAll(c) // then silent until the proxy closes
	})
	base, p := startProxy(t, staticResolver{"a": {Addr: addr}}, proxy.Options{})
	conn := dialProxy(t, base)
	_, _ = io.WriteString(conn, "GET /route/a/events HTTP/1.0\r\nHost: h\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(resp.Body).ReadString('\n'); line != "data: 1\n" {
		t.Fatalf("first event %q (%v)", line, err)
	}
	p.Close()
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadAll(resp.Body); isTimeout(err) {
		t.Errorf("Proxy.Close left the stream open")
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
