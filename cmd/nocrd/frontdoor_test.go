package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"
	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/websocket"
	corev1 "k8s.io/api/core/v1"

	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
)

const issuer = "https://issuer.example"

// signer makes ES256 tokens for the front-door tests.
type signer struct {
	key *ecdsa.PrivateKey
	pem string
}

func newSigner(t *testing.T) signer {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	return signer{key, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}
}

func (s signer) token(t *testing.T, sub string, mutate func(jwt.Token)) string {
	t.Helper()
	tok := jwt.New()
	_ = tok.Set(jwt.SubjectKey, sub)
	_ = tok.Set(jwt.IssuerKey, issuer)
	_ = tok.Set(jwt.ExpirationKey, time.Now().Add(time.Hour))
	if mutate != nil {
		mutate(tok)
	}
	b, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, s.key))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// workspaceServer stands in for a workspace container: a real HTTP server
// bound on the pod's IP and port, with echo, SSE and WebSocket endpoints.
type workspaceServer struct {
	name string
	hits atomic.Int32
	srv  *http.Server
	// floods is told when a /flood answer ends, with the bytes it wrote.
	floods chan int64
}

func startWorkspaceServer(t *testing.T, name, addr string) *workspaceServer {
	t.Helper()
	w := &workspaceServer{name: name, floods: make(chan int64, 4)}
	mux := http.NewServeMux()
	mux.HandleFunc("/flood", func(rw http.ResponseWriter, r *http.Request) {
		// Writes until the proxy stops taking its bytes (at most 4 GiB).
		w.hits.Add(1)
		chunk := bytes.Repeat([]byte("f"), 64<<10)
		var n int64
		for n < 4<<30 {
			m, err := rw.Write(chunk)
			n += int64(m)
			if err != nil {
				break
			}
		}
		w.floods <- n
	})
	mux.HandleFunc("/events", func(rw http.ResponseWriter, r *http.Request) {
		w.hits.Add(1)
		rw.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(rw, "data: %s %d\n\n", w.name, i)
			rw.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond)
		}
	})
	mux.HandleFunc("/slow", func(rw http.ResponseWriter, r *http.Request) {
		w.hits.Add(1)
		d, _ := time.ParseDuration(r.URL.Query().Get("for"))
		select {
		case <-time.After(d):
		case <-r.Context().Done(): // the proxy closed the connection
			return
		}
		_, _ = io.WriteString(rw, "slept "+d.String())
	})
	mux.HandleFunc("/go-login", func(rw http.ResponseWriter, r *http.Request) {
		w.hits.Add(1)
		http.Redirect(rw, r, "/login?from=go-login", http.StatusFound)
	})
	mux.HandleFunc("/set-cookie", func(rw http.ResponseWriter, r *http.Request) {
		w.hits.Add(1)
		http.SetCookie(rw, &http.Cookie{Name: "session", Value: w.name, Path: "/"})
	})
	mux.HandleFunc("/crash", func(rw http.ResponseWriter, r *http.Request) {
		// Switches protocols, then goes away without a close frame, as a
		// workspace server that crashes does.
		w.hits.Add(1)
		c, buf, err := rw.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		_, _ = buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = buf.Flush()
		_ = c.Close()
	})
	mux.HandleFunc("/too-large", func(rw http.ResponseWriter, r *http.Request) {
		// Answers without reading the body, as a server that limits
		// uploads does.
		w.hits.Add(1)
		http.Error(rw, w.name+" takes at most 1 MiB", http.StatusRequestEntityTooLarge)
	})
	mux.Handle("/ws", websocket.Handler(func(c *websocket.Conn) {
		w.hits.Add(1)
		for {
			var msg string
			if websocket.Message.Receive(c, &msg) != nil || websocket.Message.Send(c, w.name+":"+msg) != nil {
				return
			}
		}
	}))
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		w.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode(map[string]any{
			"server": w.name, "uri": r.RequestURI, "method": r.Method, "body": string(body), "header": r.Header,
		})
	})
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("bind the stand-in workspace on %s: %v", addr, err)
	}
	w.srv = &http.Server{Handler: mux}
	go func() { _ = w.srv.Serve(l) }()
	t.Cleanup(func() {
		// Shutdown waits for connections still ending: net/http lingers
		// half a second on one whose answer failed (the proxy closed it).
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = w.srv.Shutdown(ctx)
		_ = w.srv.Close()
	})
	return w
}

type echo struct {
	Server, URI, Method, Body string
	Header                    http.Header
}

// startNocrd runs the built binary serving HTTP with ES256 authentication.
func startNocrd(t *testing.T, ns string, s signer, extraEnv ...string) string {
	t.Helper()
	base, _ := startNocrdProcess(t, ns, s, extraEnv...)
	return base
}

// startNocrdProcess is startNocrd that also returns the process.
func startNocrdProcess(t *testing.T, ns string, s signer, extraEnv ...string) (string, *os.Process) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	cmd := exec.Command(testenv.NocrdBinary(t), "--host", "127.0.0.1", "--port", port, "-n", ns, "--mode", "namespaced", "--log-level", "error")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+testenv.Kubeconfig(t), "AUTH_ENABLED=true", "JWT_PUBLIC_KEY="+s.pem,
		"AUTH_ISSUER="+issuer, "AUTH_SCOPES=workspaces", "PROXY_SUBJECT_HEADER=X-Forwarded-User", "REAPER_INTERVAL=0")
	cmd.Env = append(cmd.Env, extraEnv...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("nocrd exited with %v after SIGINT: %s", err, stderr.String())
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("nocrd did not stop within 10 s of SIGINT")
		}
	})
	base := "http://127.0.0.1:" + port
	testenv.Eventually(t, 20*time.Second, "nocrd to be ready", func() (bool, error) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("readyz %d; stderr %s", resp.StatusCode, stderr.String())
	})
	return base, cmd.Process
}

type bearerRT struct{ token string }

func (b bearerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func mcpClient(t *testing.T, base, token string, progress func(string)) *mcpsdk.ClientSession {
	t.Helper()
	opts := &mcpsdk.ClientOptions{ProgressNotificationHandler: func(_ context.Context, r *mcpsdk.ProgressNotificationClientRequest) {
		if progress != nil {
			progress(r.Params.Message)
		}
	}}
	cs, err := mcpsdk.NewClient(&mcpsdk.Implementation{Name: "e2e", Version: "1"}, opts).Connect(context.Background(),
		&mcpsdk.StreamableClientTransport{Endpoint: base + "/mcp", HTTPClient: &http.Client{Transport: bearerRT{token}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// spawn creates a workspace through MCP on the public port, waiting for it
// with progress notifications, and returns its pod IP.
func spawn(t *testing.T, cs *mcpsdk.ClientSession, id string, progressSeen func() int) string {
	t.Helper()
	return spawnOn(t, cs, id, "", progressSeen)
}

// spawnOn is spawn onto a node of the test's own (testenv.Node), or the
// shared one when node is empty.
func spawnOn(t *testing.T, cs *mcpsdk.ClientSession, id, node string, progressSeen func() int) string {
	t.Helper()
	spec := map[string]any{"containers": []any{map[string]any{"name": "w", "image": "busybox"}}}
	if node != "" {
		spec["nodeName"] = node
	}
	params := &mcpsdk.CallToolParams{Name: "spawn_workspace", Arguments: map[string]any{
		"id": id, "wait": true, "timeoutSeconds": 60,
		"annotations": map[string]string{"nogoo9/default-grace-period": "1"},
		"spec":        spec,
	}}
	params.SetProgressToken("p-" + id)
	res, err := cs.CallTool(context.Background(), params)
	if err != nil || res.IsError {
		t.Fatalf("spawn %s: %v %+v", id, err, res)
	}
	if progressSeen != nil {
		// The server writes progress before the result, but the SDK client
		// hands notifications to a goroutine of its own, so the result may
		// be seen first: the notifications must still arrive.
		testenv.Eventually(t, 5*time.Second, "progress notifications for "+id, func() (bool, error) { return progressSeen() > 0, nil })
	}
	return res.StructuredContent.(map[string]any)["podIP"].(string)
}

// dialWebSocket opens a WebSocket to base+path, closed when t ends.
func dialWebSocket(t *testing.T, base, path string) *websocket.Conn {
	t.Helper()
	cfg, err := websocket.NewConfig("ws"+strings.TrimPrefix(base, "http")+path, base)
	if err != nil {
		t.Fatal(err)
	}
	c, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func do(t *testing.T, method, url string, header map[string]string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

// TestFrontDoor drives the whole binary: MCP and the edge proxy on one
// port, with ES256 tokens, against workspaces on the test cluster; once as
// one process, and once with two proxy workers, which must behave the same.
func TestFrontDoor(t *testing.T) {
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) { testFrontDoor(t, workers) })
	}
}

func testFrontDoor(t *testing.T, workers int) {
	ns := testenv.Namespace(t)
	s := newSigner(t)
	base := startNocrd(t, ns, s, "PROXY_WORKERS="+strconv.Itoa(workers))
	alice, bob := s.token(t, "alice", nil), s.token(t, "bob", nil)

	var mu sync.Mutex
	var progress int
	cs := mcpClient(t, base, alice, func(string) { mu.Lock(); progress++; mu.Unlock() })
	// w1 runs on a node of the test's own, so that its IP, once freed, goes
	// to one of this test's workspaces and not another test's.
	node := testenv.Node(t, frontDoorCIDR)
	ip := spawnOn(t, cs, "w1", node, func() int { mu.Lock(); defer mu.Unlock(); return progress })
	ws := startWorkspaceServer(t, "alice-w1", net.JoinHostPort(ip, "3000"))
	auth := map[string]string{"Authorization": "Bearer " + alice}

	t.Run("forwarding", func(t *testing.T) {
		resp, b := do(t, "POST", base+"/route/w1/api/files?x=1&token="+alice+"&y=2", map[string]string{"X-Forwarded-User": "mallory", "X_Forwarded_User": "mallory", "Connection": "X-Private", "X-Private": "1"}, strings.NewReader("payload"))
		var e echo
		if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		if e.Server != "alice-w1" || e.URI != "/api/files?x=1&y=2" || e.Body != "payload" || e.Method != "POST" {
			t.Errorf("workspace saw %+v", e)
		}
		if e.Header.Get("X-Forwarded-User") != "alice" || e.Header.Get("X_Forwarded_User") != "" || e.Header.Get("X-Private") != "" || e.Header.Get("Authorization") != "" ||
			e.Header.Get("X-Forwarded-Prefix") != "/route/w1" || e.Header.Get("X-Forwarded-For") == "" {
			t.Errorf("workspace saw headers %v", e.Header)
		}
		// The token parameter's name percent-encoded authenticates all the
		// same, so it is stripped all the same.
		resp, b = do(t, "GET", base+"/route/w1/q?%74oken="+alice+"&z=1&tok%65n", nil, nil)
		e = echo{}
		if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != 200 || e.URI != "/q?z=1" {
			t.Errorf("encoded token parameter: %d %.300s", resp.StatusCode, b)
		}
		// A multipart upload reaches the workspace byte for byte: its parts
		// in the order sent, each part's own headers kept.
		form := "--b0und\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\nX-Part: 1\r\n\r\nhello\r\n" +
			"--b0und\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nvalue\r\n--b0und--\r\n"
		resp, b = do(t, "POST", base+"/route/w1/upload", map[string]string{"Authorization": "Bearer " + alice, "Content-Type": "multipart/form-data; boundary=b0und"}, strings.NewReader(form))
		e = echo{}
		if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != 200 || e.Body != form {
			t.Errorf("multipart upload: %d, the workspace got %q, want %q", resp.StatusCode, e.Body, form)
		}
		// A target in absolute-form is routed by its path (RFC 9112
		// section 3.2.2).
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET %s/route/w1/abs?k=v HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", base, strings.TrimPrefix(base, "http://"), alice)
		absResp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(absResp.Body)
		conn.Close()
		e = echo{}
		if err := json.Unmarshal(b, &e); err != nil || absResp.StatusCode != 200 || e.URI != "/abs?k=v" {
			t.Errorf("absolute-form target: %d %.300s", absResp.StatusCode, b)
		}
		// A workspace's answer to an upload it did not read reaches the
		// client, not a 502 (curl sends Expect: 100-continue for it).
		for _, expect := range []string{"", "100-continue"} {
			resp, b = do(t, "POST", base+"/route/w1/too-large", map[string]string{"Authorization": "Bearer " + alice, "Expect": expect}, strings.NewReader(strings.Repeat("u", 16<<20)))
			if resp.StatusCode != http.StatusRequestEntityTooLarge || string(b) != "alice-w1 takes at most 1 MiB\n" {
				t.Errorf("an upload answered early (Expect %q): %d %.200s", expect, resp.StatusCode, b)
			}
		}
		// A large (but acceptable) header passes; the token header is gone.
		resp, b = do(t, "GET", base+"/route/w1/", map[string]string{"Authorization": "Bearer " + alice, "X-Big": strings.Repeat("a", 8000)}, nil)
		if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != 200 || len(e.Header.Get("X-Big")) != 8000 || e.Header.Get("Authorization") != "" {
			t.Errorf("large header: %d %.200s", resp.StatusCode, b)
		}
	})

	t.Run("legacy SSE transport", func(t *testing.T) {
		// /sse carries the caller as /mcp does: alice sees her workspace,
		// and bob cannot reach it through the pod tools.
		sse := func(token string) *mcpsdk.ClientSession {
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel) // the event stream lives on Connect's context
			cs, err := mcpsdk.NewClient(&mcpsdk.Implementation{Name: "e2e-sse", Version: "1"}, nil).Connect(ctx,
				&mcpsdk.SSEClientTransport{Endpoint: base + "/sse", HTTPClient: &http.Client{Transport: bearerRT{token}}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cs.Close() })
			return cs
		}
		res, err := sse(alice).CallTool(context.Background(), &mcpsdk.CallToolParams{Name: "list_workspaces", Arguments: map[string]any{}})
		if err != nil || res.IsError || !strings.Contains(resultText(res), "w1") {
			t.Fatalf("alice's list_workspaces over SSE: %v %+v", err, res)
		}
		res, err = sse(bob).CallTool(context.Background(), &mcpsdk.CallToolParams{Name: "patch_pod", Arguments: map[string]any{
			"name": "ws-alice-w1", "patch": map[string]any{"metadata": map[string]any{"annotations": map[string]any{"nogoo9/owner": "bob"}}}}})
		if err != nil || !res.IsError || !strings.Contains(resultText(res), "belongs to another owner") {
			t.Fatalf("bob's patch_pod of alice's workspace over SSE: %v %+v", err, res)
		}
	})

	t.Run("server-sent events", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/route/w1/events", nil)
		req.Header.Set("Authorization", "Bearer "+alice)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		for i := range 3 {
			line, err := r.ReadString('\n')
			if want := fmt.Sprintf("data: alice-w1 %d\n", i); err != nil || line != want {
				t.Fatalf("event %d: %q %v", i, line, err)
			}
			_, _ = r.ReadString('\n')
		}
	})

	t.Run("websocket", func(t *testing.T) {
		c := dialWebSocket(t, base, "/route/w1/ws?token="+alice)
		for _, msg := range []string{"ping", strings.Repeat("z", 70000)} {
			var got string
			if websocket.Message.Send(c, msg) != nil || websocket.Message.Receive(c, &got) != nil || got != "alice-w1:"+msg {
				t.Fatalf("echo of %d bytes: got %d bytes", len(msg), len(got))
			}
		}
		// A workspace that goes away ends its client's connection, which
		// would otherwise wait on it until the client next sent something.
		raw, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(raw, "GET /route/w1/crash HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", alice)
		br := bufio.NewReader(raw)
		if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("handshake with a workspace that crashes: %v %v", resp, err)
		}
		_ = raw.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := br.ReadByte(); err == nil || os.IsTimeout(err) {
			t.Errorf("the tunnel to a workspace that went away stayed open (%v)", err)
		}
	})

	t.Run("a browser's visit", func(t *testing.T) {
		// Opened with ?token=, the workspace's page and everything it
		// loads after carry the token in a cookie, which the workspace
		// never sees, nor the token anywhere else.
		jar, _ := cookiejar.New(nil)
		u, _ := url.Parse(base + "/route/w1/")
		jar.SetCookies(u, []*http.Cookie{{Name: "theme", Value: "dark", Path: "/route/w1"}})
		browser := &http.Client{Jar: jar}
		var redirects []string
		browser.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			redirects = append(redirects, req.URL.String())
			return nil
		}
		req, _ := http.NewRequest("GET", base+"/route/w1/lab?token="+alice+"&x=1", nil)
		req.Header.Set("Sec-Fetch-Dest", "document")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		for i, r := range []*http.Request{req, mustRequest(t, "GET", base+"/route/w1/api/contents")} {
			resp, err := browser.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e echo
			if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != 200 || e.Server != "alice-w1" {
				t.Fatalf("request %d: %d %.300s", i, resp.StatusCode, b)
			}
			if strings.Contains(string(b), alice) || e.Header.Get("Cookie") != "theme=dark" {
				t.Errorf("request %d: the workspace saw %s %v", i, e.URI, e.Header)
			}
		}
		if len(redirects) != 1 || redirects[0] != base+"/route/w1/lab?x=1" {
			t.Errorf("redirects %q", redirects)
		}
		// The workspace's redirect to a path of its own stays in it.
		resp, b := do(t, "GET", base+"/route/w1/go-login", auth, nil)
		var e echo
		if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != 200 || e.Server != "alice-w1" || e.URI != "/login?from=go-login" {
			t.Errorf("following the workspace's redirect: %d %.200s", resp.StatusCode, b)
		}
		// The workspace's own cookie for its root is kept to its route.
		resp, _ = do(t, "GET", base+"/route/w1/set-cookie", auth, nil)
		if got := resp.Header.Get("Set-Cookie"); got != "session=alice-w1; Path=/route/w1" {
			t.Errorf("the workspace's cookie reached the browser as %q", got)
		}
	})

	t.Run("attacks", func(t *testing.T) {
		hs256 := func(secret []byte) string {
			tok := jwt.New()
			_ = tok.Set(jwt.SubjectKey, "alice")
			_ = tok.Set(jwt.IssuerKey, issuer)
			_ = tok.Set(jwt.ExpirationKey, time.Now().Add(time.Hour))
			b, _ := jwt.Sign(tok, jwt.WithKey(jwa.HS256, secret))
			return string(b)
		}
		enc := base64.RawURLEncoding
		none := enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
			enc.EncodeToString([]byte(fmt.Sprintf(`{"sub":"alice","iss":%q,"exp":%d}`, issuer, time.Now().Add(time.Hour).Unix()))) + "."
		before := ws.hits.Load()
		cases := []struct {
			name, path string
			header     map[string]string
			status     int
		}{
			{"no token", "/route/w1/", nil, 401},
			{"garbage", "/route/w1/", map[string]string{"Authorization": "Bearer not.a.jwt"}, 401},
			{"alg none", "/route/w1/", map[string]string{"Authorization": "Bearer " + none}, 401},
			{"HS256 with the public key", "/route/w1/", map[string]string{"Authorization": "Bearer " + hs256([]byte(s.pem))}, 401},
			{"expired", "/route/w1/", map[string]string{"Authorization": "Bearer " + s.token(t, "alice", func(tok jwt.Token) { _ = tok.Set(jwt.ExpirationKey, time.Now().Add(-time.Hour)) })}, 401},
			{"not yet valid", "/route/w1/", map[string]string{"Authorization": "Bearer " + s.token(t, "alice", func(tok jwt.Token) { _ = tok.Set(jwt.NotBeforeKey, time.Now().Add(time.Hour)) })}, 401},
			{"wrong issuer", "/route/w1/", map[string]string{"Authorization": "Bearer " + s.token(t, "alice", func(tok jwt.Token) { _ = tok.Set(jwt.IssuerKey, "https://evil.example") })}, 401},
			{"another user's workspace", "/route/w1/", map[string]string{"Authorization": "Bearer " + bob}, 403},
			{"token in query for another user", "/route/w1/?token=" + bob, nil, 403},
			{"dot-dot to another id", "/route/w1/../w2/", auth, 400},
			{"encoded dot-dot", "/route/w1/%2e%2e/w2/", auth, 400},
			{"encoded slash", "/route/w1%2Fx/", auth, 400},
			{"unknown workspace", "/route/nope/", auth, 404},
			{"oversized header", "/route/w1/", map[string]string{"Authorization": "Bearer " + alice, "X-Huge": strings.Repeat("h", 20000)}, 431},
		}
		for _, c := range cases {
			resp, b := do(t, "GET", base+c.path, c.header, nil)
			if resp.StatusCode != c.status {
				t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, b, c.status)
				continue
			}
			var e map[string]string
			if json.Unmarshal(b, &e) != nil || e["error"] == "" || e["detail"] == "" {
				t.Errorf("%s: body %s is not {error, detail}", c.name, b)
			}
			if c.status == 401 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), `resource_metadata="`+base+`/.well-known/oauth-protected-resource/route"`) {
				t.Errorf("%s: WWW-Authenticate %q", c.name, resp.Header.Get("WWW-Authenticate"))
			}
		}
		if n := ws.hits.Load(); n != before {
			t.Errorf("%d refused requests reached the workspace", n-before)
		}
	})

	t.Run("metadata, readiness and metrics", func(t *testing.T) {
		resp, b := do(t, "GET", base+"/.well-known/oauth-protected-resource/mcp", nil, nil)
		var md map[string]any
		if json.Unmarshal(b, &md) != nil || resp.StatusCode != 200 || md["resource"] != base+"/mcp" ||
			fmt.Sprint(md["authorization_servers"]) != "["+issuer+"]" || fmt.Sprint(md["scopes_supported"]) != "[workspaces]" ||
			fmt.Sprint(md["bearer_methods_supported"]) != "[header]" || resp.Header.Get("Vary") == "" {
			t.Errorf("metadata: %d %s", resp.StatusCode, b)
		}
		// The route prefix takes a token in the query too; MCP only in the
		// header, as its authorization specification requires.
		resp, b = do(t, "GET", base+"/.well-known/oauth-protected-resource/route", nil, nil)
		if json.Unmarshal(b, &md) != nil || resp.StatusCode != 200 || md["resource"] != base+"/route" ||
			fmt.Sprint(md["bearer_methods_supported"]) != "[header query]" {
			t.Errorf("route metadata: %d %s", resp.StatusCode, b)
		}
		// The headers a worker uses to tell the primary about the client's
		// connection are dropped when a client sends them, in any case: here
		// a forged TLS flag would turn the resource into an https URL.
		req, _ := http.NewRequest("GET", base+"/.well-known/oauth-protected-resource/mcp", nil)
		req.Header.Set("X-Nocrd-Hop-Tls", "1")
		req.Header["x-nocrd-hop-tls"] = []string{"1"}
		req.Header.Set("X-Nocrd-Hop-Remote-Addr", "203.0.113.9:443")
		req.Header.Set("X-Nocrd-Hop-Local-Addr", "203.0.113.10:443")
		if resp, err := http.DefaultClient.Do(req); err != nil {
			t.Error(err)
		} else {
			forged, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			md = nil
			if json.Unmarshal(forged, &md) != nil || resp.StatusCode != 200 || md["resource"] != base+"/mcp" {
				t.Errorf("metadata with forged hop headers: %d %s", resp.StatusCode, forged)
			}
		}
		resp, _ = do(t, "POST", base+"/mcp", map[string]string{"Content-Type": "application/json"}, strings.NewReader(`{}`))
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `resource_metadata="`+base+`/.well-known/oauth-protected-resource/mcp"`) {
			t.Errorf("MCP without a token: %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		_, b = do(t, "GET", base+"/metrics", nil, nil)
		for _, want := range []string{
			`nocrd_proxy_requests_total{outcome="proxied",status="200"}`,
			`nocrd_proxy_requests_total{outcome="unauthorized",status="401"}`,
			`nocrd_proxy_requests_total{outcome="forbidden",status="403"}`,
			`nocrd_proxy_requests_total{outcome="upgraded",status="101"}`,
			`nocrd_proxy_requests_total{outcome="sign_in",status="303"} 1`,
			`nocrd_proxy_auth_failures_total{reason="expired"} 1`,
			`nocrd_proxy_auth_failures_total{reason="wrong_owner"} 2`,
			`nocrd_proxy_upstream_seconds_bucket{le="+Inf"}`,
			// With workers, the primary adds up every worker's metrics.
			`nocrd_route_cache_hits_total`, `nocrd_proxy_websocket_connections 0`, `nocrd_route_watch_synced ` + strconv.Itoa(workers) + "\n",
		} {
			if !strings.Contains(string(b), want) {
				t.Errorf("metrics lack %s:\n%s", want, b)
			}
		}
	})

	t.Run("MCP event stream stays open on the public port", func(t *testing.T) {
		post := func(sid, body string) *http.Response {
			req, _ := http.NewRequest("POST", base+"/mcp", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+alice)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if sid != "" {
				req.Header.Set("Mcp-Session-Id", sid)
				req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}
		resp := post("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
		sid := resp.Header.Get("Mcp-Session-Id")
		resp.Body.Close()
		post(sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`).Body.Close()
		if sid == "" {
			t.Fatal("no session id")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/mcp", nil)
		req.Header.Set("Authorization", "Bearer "+alice)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("GET stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		_, err = io.ReadAll(resp.Body)
		if ctx.Err() == nil {
			t.Fatalf("the GET event stream ended by itself (%v)", err)
		}
	})

	t.Run("deleted workspace and reused IP", func(t *testing.T) {
		if res, err := cs.CallTool(context.Background(), &mcpsdk.CallToolParams{Name: "stop_workspace", Arguments: map[string]any{"id": "w1"}}); err != nil || res.IsError {
			t.Fatalf("stop: %v %+v", err, res)
		}
		// Terminating: never routed again; then gone: 404.
		resp, _ := do(t, "GET", base+"/route/w1/", auth, nil)
		if resp.StatusCode == 200 {
			t.Fatal("a terminating workspace was still routed")
		}
		testenv.Eventually(t, 30*time.Second, "w1 to be gone", func() (bool, error) {
			resp, _ := do(t, "GET", base+"/route/w1/", auth, nil)
			return resp.StatusCode == 404, fmt.Errorf("status %d", resp.StatusCode)
		})
		_ = ws.srv.Close()
		// KWOK hands each new pod on w1's node a random one of the IPs
		// freed there: bob's workspaces, spawned on it through the SDK
		// without KWOK's delays, keep whatever they get until one gets
		// w1's old IP.
		kube, err := k8s.NewForConfig(k8s.Config{Mode: k8s.ModeNamespaced, Namespace: ns}, testenv.AdminConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		fast := map[string]string{"pod-create.stage.kwok.x-k8s.io/delay": "0ms", "pod-create.stage.kwok.x-k8s.io/jitter-delay": "0ms",
			"pod-ready.stage.kwok.x-k8s.io/delay": "0ms", "pod-ready.stage.kwok.x-k8s.io/jitter-delay": "0ms"}
		for round := 0; round < 64; round++ {
			id := fmt.Sprintf("b%d", round)
			w, err := kube.SpawnWorkspace(context.Background(), k8s.SpawnRequest{ID: id, Owner: "bob", PodAnnotations: fast,
				Spec: &corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "w", Image: "busybox"}}}})
			if err == nil {
				w, err = kube.WaitReady(context.Background(), w, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			if w.PodIP != ip {
				continue
			}
			t.Logf("round %d: %s went from alice's w1 to bob's %s", round, ip, id)
			startWorkspaceServer(t, "bob-"+id, net.JoinHostPort(ip, "3000"))
			var resp *http.Response
			var b []byte
			testenv.Eventually(t, 5*time.Second, id+" to be routed", func() (bool, error) {
				resp, b = do(t, "GET", base+"/route/"+id+"/who", map[string]string{"Authorization": "Bearer " + bob}, nil)
				return resp.StatusCode == 200, fmt.Errorf("%d %s", resp.StatusCode, b)
			})
			var e echo
			if json.Unmarshal(b, &e); e.Server != "bob-"+id {
				t.Fatalf("bob's workspace answered from %q: %s", e.Server, b)
			}
			if resp, _ := do(t, "GET", base+"/route/w1/", auth, nil); resp.StatusCode != 404 {
				t.Fatalf("the deleted workspace answers %d", resp.StatusCode)
			}
			if resp, _ := do(t, "GET", base+"/route/"+id+"/", auth, nil); resp.StatusCode != 403 {
				t.Fatalf("alice reached bob's workspace: %d", resp.StatusCode)
			}
			return
		}
		t.Fatalf("KWOK did not hand %s to any of 64 new workspaces on its node", ip)
	})
}

// frontDoorCIDR is the pod CIDR of TestFrontDoor's node (see testenv.Node).
const frontDoorCIDR = "127.4.0.0/24"

// TestClientTimeout: a connection that sends nothing, or half a request
// head, is closed once CLIENT_TIMEOUT has passed, as is one left idle after
// a request. The timeout bounds only the wait for a head: a request
// answered after it leaves its connection usable, an upgraded connection
// may be quiet for longer, and a request whose body comes slower is still
// read whole and answered. A body is bounded by CLIENT_BODY_TIMEOUT
// instead, the silence allowed between its bytes.
func TestClientTimeout(t *testing.T) {
	const timeout = time.Second
	ns := testenv.Namespace(t)
	s := newSigner(t)
	const bodyTimeout, sendTimeout = 3 * timeout, 2 * timeout
	base := startNocrd(t, ns, s, "CLIENT_TIMEOUT="+timeout.String(), "CLIENT_BODY_TIMEOUT="+bodyTimeout.String(),
		"CLIENT_SEND_TIMEOUT="+sendTimeout.String())
	addr := strings.TrimPrefix(base, "http://")
	alice := s.token(t, "alice", nil)
	dial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// closedAfter reads c until the server closes it, and says how long
	// that took from start.
	closedAfter := func(t *testing.T, c net.Conn, start time.Time) time.Duration {
		_ = c.SetReadDeadline(time.Now().Add(10 * timeout))
		b, err := io.ReadAll(c)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("still open after %s", 10*timeout)
		}
		if bytes.Contains(b, []byte(" 200 ")) {
			t.Errorf("answered %q", b)
		}
		return time.Since(start)
	}
	within := func(t *testing.T, took time.Duration) {
		if took < timeout*9/10 || took > 4*timeout {
			t.Errorf("closed after %s, want about %s", took, timeout)
		}
	}

	for name, sent := range map[string]string{"nothing": "", "half a head": "GET /healthz HTTP/1.1\r\nHost: " + addr + "\r\n"} {
		t.Run(name, func(t *testing.T) {
			c := dial(t)
			start := time.Now()
			if _, err := io.WriteString(c, sent); err != nil {
				t.Fatal(err)
			}
			within(t, closedAfter(t, c, start))
		})
	}

	t.Run("idle after a request", func(t *testing.T) {
		c := dial(t)
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		within(t, closedAfter(t, c, time.Now()))
	})

	// What outlasts the timeout once a head is in is not cut: a request
	// without a body answered after it, then the next request on the same
	// connection, and an upgraded connection quiet for longer.
	cs := mcpClient(t, base, alice, nil)
	ip := spawn(t, cs, "ct", nil)
	ws := startWorkspaceServer(t, "alice-ct", net.JoinHostPort(ip, "3000"))
	t.Run("a client that stops reading", func(t *testing.T) {
		// Past CLIENT_SEND_TIMEOUT without taking the answer's bytes, the
		// client's connection is closed, and the workspace's with it.
		c := dial(t)
		if _, err := io.WriteString(c, "GET /route/ct/flood HTTP/1.1\r\nHost: "+addr+"\r\nAuthorization: Bearer "+alice+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		select {
		case n := <-ws.floods:
			t.Logf("the workspace's answer ended after %d MiB", n>>20)
		case <-time.After(10 * sendTimeout):
			t.Fatalf("the workspace was still writing %s after the client stopped reading", 10*sendTimeout)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * sendTimeout))
		if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Error("the client's connection stayed open")
		}
	})
	t.Run("a request answered after the timeout", func(t *testing.T) {
		c := dial(t)
		br := bufio.NewReader(c)
		for i, wait := range []time.Duration{2 * timeout, 0} {
			req := fmt.Sprintf("GET /route/ct/slow?for=%s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", wait, addr, alice)
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * timeout))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %d: no answer: %v", i, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "slept "+wait.String() {
				t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
			}
		}
	})
	t.Run("an upgraded connection quiet for longer", func(t *testing.T) {
		c := dialWebSocket(t, base, "/route/ct/ws?token="+alice)
		for i, msg := range []string{"before", "after"} {
			if i > 0 {
				time.Sleep(2 * timeout)
			}
			var got string
			_ = c.SetDeadline(time.Now().Add(10 * timeout))
			if err := websocket.Message.Send(c, msg); err != nil {
				t.Fatalf("send %q: %v", msg, err)
			}
			if err := websocket.Message.Receive(c, &got); err != nil || got != "alice-ct:"+msg {
				t.Fatalf("echo of %q: %q %v", msg, got, err)
			}
		}
	})

	t.Run("a body slower than the timeout", func(t *testing.T) {
		c := dial(t)
		body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"slow","version":"1"}}}`
		head := "POST /mcp HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + alice +
			"\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
		if _, err := io.WriteString(c, head+body[:20]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * timeout)
		if _, err := io.WriteString(c, body[20:]); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * timeout))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Mcp-Session-Id") == "" {
			t.Errorf("initialize answered %d, session %q", resp.StatusCode, resp.Header.Get("Mcp-Session-Id"))
		}
	})

	// A body that stops coming is answered 408 once it has been silent
	// for CLIENT_BODY_TIMEOUT, and the connection closed: a small one,
	// which fasthttp reads before any handler runs, and large ones, which
	// the MCP side and the proxy read as they come.
	for name, c := range map[string]struct {
		head string
		sent int
	}{
		"a small body that stops": {"POST /mcp HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + alice +
			"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n", 20},
		"a large body to the MCP endpoint that stops": {"POST /mcp HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + alice +
			"\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n", 100000},
		"a large body to a workspace that stops": {"PUT /route/ct/upload HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + alice +
			"\r\nContent-Length: 1000000\r\n\r\n", 100000},
	} {
		t.Run(name, func(t *testing.T) {
			conn := dial(t)
			start := time.Now()
			if _, err := io.WriteString(conn, c.head+strings.Repeat("x", c.sent)); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(10 * bodyTimeout))
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			var e struct{ Error, Detail string }
			if resp.StatusCode != http.StatusRequestTimeout || json.Unmarshal(b, &e) != nil || !strings.Contains(e.Detail, "stopped sending the request") {
				t.Errorf("answered %d %s", resp.StatusCode, b)
			}
			if took := time.Since(start); took < bodyTimeout*9/10 || took > bodyTimeout+3*timeout {
				t.Errorf("answered after %s, want about %s", took, bodyTimeout)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("the connection stayed open (%v)", err)
			}
		})
	}
}

// TestReadsOn: the client deadline is lifted for exactly the requests
// fasthttp reads a body for, whatever the method, and for no others.
func TestReadsOn(t *testing.T) {
	for _, c := range []struct {
		head string
		want bool
	}{
		{"GET / HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", false},
		{"POST /mcp HTTP/1.1\r\nHost: h\r\n\r\n", false},
		{"POST /mcp HTTP/1.0\r\n\r\n", false},
		{"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false},
		{"POST /mcp HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n", true},
		{"PUT /f HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", true},
		{"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n", true},
	} {
		var h fasthttp.RequestHeader
		if err := h.Read(bufio.NewReader(strings.NewReader(c.head))); err != nil {
			t.Fatalf("%q: %v", c.head, err)
		}
		if got := readsOn(&h); got != c.want {
			t.Errorf("%q: readsOn = %v, want %v", c.head, got, c.want)
		}
	}
}

// mustRequest is http.NewRequest for a request known to be valid.
func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestShutdownDrains: told to stop, nocrd takes no new connection but lets
// the requests in flight finish, for SHUTDOWN_TIMEOUT (here 8 s, longer
// than the 5 s default); one that would take longer is cut there. With
// workers, each worker does the same and the first process waits for
// them.
func TestShutdownDrains(t *testing.T) {
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			const bound = 8 * time.Second
			ns := testenv.Namespace(t)
			s := newSigner(t)
			base, proc := startNocrdProcess(t, ns, s, "SHUTDOWN_TIMEOUT="+bound.String(), "PROXY_WORKERS="+strconv.Itoa(workers))
			alice := s.token(t, "alice", nil)
			cs := mcpClient(t, base, alice, nil)
			ip := spawn(t, cs, "sd", nil)
			startWorkspaceServer(t, "alice-sd", net.JoinHostPort(ip, "3000"))
			_ = cs.Close() // its event stream would end at the stop anyway

			type result struct {
				status int
				body   string
				err    error
				at     time.Time
			}
			inFlight := func(d time.Duration) chan result {
				out := make(chan result, 1)
				go func() {
					req, _ := http.NewRequest("GET", base+"/route/sd/slow?for="+d.String(), nil)
					req.Header.Set("Authorization", "Bearer "+alice)
					resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
					if err != nil {
						out <- result{err: err, at: time.Now()}
						return
					}
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					out <- result{resp.StatusCode, string(b), err, time.Now()}
				}()
				return out
			}
			short, long := inFlight(bound-2*time.Second), inFlight(3*bound)
			time.Sleep(time.Second) // both are at the workspace
			stopped := time.Now()
			if err := proc.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if r := <-short; r.err != nil || r.status != 200 || r.body != "slept "+(bound-2*time.Second).String() {
				t.Errorf("the request that finishes within the bound: %d %q %v", r.status, r.body, r.err)
			}
			r := <-long
			if r.err == nil && r.status == 200 {
				t.Errorf("the request that outlasts the bound was answered: %q", r.body)
			}
			if took := r.at.Sub(stopped); took < bound-time.Second || took > bound+3*time.Second {
				t.Errorf("the request that outlasts the bound ended %s after the stop, want about %s", took, bound)
			}
			if _, err := http.Get(base + "/healthz"); err == nil {
				t.Error("a new connection was served after the stop")
			}
		})
	}
}
