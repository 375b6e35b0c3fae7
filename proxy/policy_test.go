package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/websocket"

	"github.com/nocrd/nocrd/proxy"
)

// gate is a route policy written in Go for the proxy's own tests (the Wasm
// policies are tested through the proxy in cmd/nocrd): it records what it
// saw, refuses DELETE with its own answer, fails on PUT, and adds a header
// to what it lets through.
type gate struct {
	mu   sync.Mutex
	saw  []map[string]string
	uris []string
}

func (g *gate) Decide(_ context.Context, req *proxy.Upstream, info proxy.RouteInfo, resp *fasthttp.Response) (bool, error) {
	// What a policy is shown: the request's headers, and the proxy's
	// RouteInfo under the reserved names (whatever the client sent there).
	h := map[string]string{}
	for k, v := range proxy.Fields(req.AppendHead(nil)) {
		h[string(k)] = string(v)
	}
	for name, v := range map[string][]byte{proxy.HeaderSubject: info.Subject, proxy.HeaderClaims: info.Claims, proxy.HeaderWorkspace: info.Workspace, proxy.HeaderOwner: []byte(info.Owner)} {
		delete(h, name)
		if len(v) > 0 {
			h[name] = string(v)
		}
	}
	client := info.Client
	g.mu.Lock()
	g.saw = append(g.saw, h)
	g.uris = append(g.uris, string(req.URI()))
	g.mu.Unlock()
	switch string(req.Method()) {
	case "DELETE":
		resp.SetStatusCode(http.StatusTeapot)
		resp.Header.Set("X-Gate", "no")
		resp.SetBodyString("deletes are not allowed here")
		return false, nil
	case "PUT":
		resp.SetStatusCode(299) // a failed policy's answer must not leak
		return false, errors.New("the policy trapped")
	}
	if client == nil {
		return false, errors.New("no client address")
	}
	req.SetHeader([]byte("X-Policy-Checked"), []byte("yes"))
	// Never forwarded: the proxy refuses them.
	if req.SetHeader([]byte("X-Nocrd-Smuggled"), []byte("by the policy")) || req.AddHeader([]byte("Keep-Alive"), []byte("timeout=1")) {
		return false, errors.New("a reserved or hop-by-hop header was accepted")
	}
	return true, nil
}

func (g *gate) last() (map[string]string, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.saw[len(g.saw)-1], g.uris[len(g.uris)-1]
}

// claimsSub is the sub of a claims header, "" unless it is a JSON object
// on one line.
func claimsSub(h string) string {
	var c struct{ Sub string }
	if strings.ContainsAny(h, "\r\n") || json.Unmarshal([]byte(h), &c) != nil {
		return ""
	}
	return c.Sub
}

// TestRoutePolicy: the policy runs after authentication on the request as
// it would be forwarded, sees the verified subject, workspace and owner in
// headers no client can forge, may change the request, and its refusals
// and failures reach the client while nothing reaches the workspace.
func TestRoutePolicy(t *testing.T) {
	addr, hits := backend(t)
	v := hs256Verifier(t)
	g := &gate{}
	base, _ := startProxy(t, staticResolver{"a": {Addr: addr, Owner: "alice"}}, proxy.Options{Authorizer: v, Policy: g})
	alice := token(t, "s3cret", "alice", time.Hour)
	forged := map[string]string{"Authorization": "Bearer " + alice, "X-Nocrd-Subject": "root", "X-Nocrd-Owner": "root", "X-Nocrd-Workspace": "b", "X-Nocrd-Claims": `{"sub":"root"}`}

	resp, s := get(t, base+"/route/a/files?q=1&token=x", forged)
	if resp.StatusCode != 200 {
		t.Fatalf("allowed GET: %d %s", resp.StatusCode, s.Body)
	}
	saw, uri := g.last()
	for what, ok := range map[string]bool{
		"policy sees the verified subject":         saw[proxy.HeaderSubject] == "alice",
		"policy sees the verified claims":          claimsSub(saw[proxy.HeaderClaims]) == "alice",
		"policy sees the workspace":                saw[proxy.HeaderWorkspace] == "a",
		"policy sees the owner":                    saw[proxy.HeaderOwner] == "alice",
		"policy never sees the token":              saw["Authorization"] == "" && !strings.Contains(uri, "token"),
		"policy sees the path inside the route":    uri == "/files?q=1",
		"workspace gets the policy's header":       s.Header["X-Policy-Checked"] == "yes",
		"workspace never gets the nocrd headers":   s.Header[proxy.HeaderSubject]+s.Header[proxy.HeaderOwner]+s.Header[proxy.HeaderWorkspace]+s.Header[proxy.HeaderClaims]+s.Header["X-Nocrd-Smuggled"] == "",
		"workspace never gets the consumed header": s.Header["Authorization"] == "",
		"workspace never gets the policy's hop":    s.Header["Keep-Alive"] == "",
	} {
		if !ok {
			t.Errorf("%s: policy saw %v %q; workspace saw %+v", what, saw, uri, s)
		}
	}

	before := hits.Load()
	req, _ := http.NewRequest(http.MethodDelete, base+"/route/a/files", nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body strings.Builder
	_, _ = io.Copy(&body, r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusTeapot || r.Header.Get("X-Gate") != "no" || body.String() != "deletes are not allowed here" {
		t.Errorf("refused DELETE: %d %v %q", r.StatusCode, r.Header, body.String())
	}

	req, _ = http.NewRequest(http.MethodPut, base+"/route/a/files", strings.NewReader("x"))
	req.Header.Set("Authorization", "Bearer "+alice)
	r, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body.Reset()
	_, _ = io.Copy(&body, r.Body)
	r.Body.Close()
	var e struct{ Error, Detail string }
	if r.StatusCode != http.StatusForbidden || json.Unmarshal([]byte(body.String()), &e) != nil || !strings.Contains(e.Detail, "policy") {
		t.Errorf("failed policy: %d %q, want 403 with a JSON error", r.StatusCode, body.String())
	}

	// Authentication comes first: no token never reaches the policy.
	calls := len(g.saw)
	if resp, _ := get(t, base+"/route/a/files", nil); resp.StatusCode != 401 || len(g.saw) != calls {
		t.Errorf("unauthenticated: %d, policy called %d times", resp.StatusCode, len(g.saw)-calls)
	}
	if hits.Load() != before {
		t.Errorf("refused requests reached the workspace")
	}
}

// TestRoutePolicyWebSocket: an upgrade goes through the policy too.
func TestRoutePolicyWebSocket(t *testing.T) {
	gotHeader := make(chan string, 1)
	mux := http.NewServeMux()
	mux.Handle("/ws", websocket.Handler(func(c *websocket.Conn) {
		gotHeader <- c.Request().Header.Get("X-Policy-Checked") + "|" + c.Request().Header.Get(proxy.HeaderSubject)
		var msg string
		if websocket.Message.Receive(c, &msg) == nil {
			_ = websocket.Message.Send(c, msg)
		}
	}))
	g := &gate{}
	base, _ := startProxy(t, staticResolver{"ws": {Addr: wsServer(t, mux)}}, proxy.Options{Policy: g})
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/route/ws/ws"
	cfg, _ := websocket.NewConfig(wsURL, base)
	cfg.Header = http.Header{proxy.HeaderSubject: {"forged"}, proxy.HeaderClaims: {`{"role":"admin"}`}}
	c, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := websocket.Message.Send(c, "hi"); err != nil {
		t.Fatal(err)
	}
	var echo string
	if err := websocket.Message.Receive(c, &echo); err != nil || echo != "hi" {
		t.Fatalf("echo %q %v", echo, err)
	}
	if h := <-gotHeader; h != "yes|" {
		t.Errorf("the workspace saw X-Policy-Checked|X-Nocrd-Subject = %q, want \"yes|\"", h)
	}
	// Without authentication there is no subject or claims: the policy sees none,
	// not the client's forged one.
	if saw, _ := g.last(); saw[proxy.HeaderSubject] != "" || saw[proxy.HeaderClaims] != "" || saw[proxy.HeaderWorkspace] != "ws" {
		t.Errorf("the policy saw %v", saw)
	}

	// A refused upgrade is answered by the policy and never upgraded.
	status, body := raw(t, base, "DELETE /route/ws/ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	if status != http.StatusTeapot || body != "deletes are not allowed here" {
		t.Errorf("refused upgrade: %d %q", status, body)
	}
}
