package mcp_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"k8s.io/client-go/rest"

	"github.com/nocrd/nocrd/internal/auth"
	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
	"github.com/nocrd/nocrd/mcp"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// server describes the nocrd MCP server a test talks to.
type server struct {
	kube k8s.Config
	mcp  mcp.Config
	// rest, when set, is the identity the server uses instead of admin.
	rest *rest.Config
	// auth, when Enabled, makes the HTTP endpoints require bearer tokens.
	auth auth.Config
	// token is the bearer token the client sends.
	token string
}

// newServer builds an in-process MCP server against the test cluster.
func newServer(t *testing.T, s server) *mcp.Server {
	t.Helper()
	if s.kube.Mode == "" {
		s.kube.Mode = k8s.ModeCluster
	}
	if s.mcp.CORSOrigin == "" {
		s.mcp.CORSOrigin = "*"
	}
	rc := s.rest
	if rc == nil {
		rc = testenv.AdminConfig(t)
	}
	kube, err := k8s.NewForConfig(s.kube, rc)
	if err != nil {
		t.Fatal(err)
	}
	opts := mcp.Options{Version: "test", Logger: slog.New(slog.DiscardHandler), Identity: s.auth}
	if s.auth.Enabled {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		if opts.Verifier, err = auth.NewVerifier(ctx, s.auth, nil); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := mcp.New(context.Background(), s.mcp, kube, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// transports are the ways a client reaches nocrd; each test that covers
// every tool runs over all of them.
var transports = []string{"streamable", "sse", "stdio"}

// connect starts a server for s and returns a client session over the
// named transport. stdio spawns the built nocrd binary.
func connect(t *testing.T, transport string, s server) *mcpsdk.ClientSession {
	t.Helper()
	return connectWith(t, transport, s, nil)
}

// connectWith is connect with client options (handlers for notifications).
func connectWith(t *testing.T, transport string, s server, opts *mcpsdk.ClientOptions) *mcpsdk.ClientSession {
	t.Helper()
	var tr mcpsdk.Transport
	switch transport {
	case "streamable", "sse":
		hs := httptest.NewServer(newServer(t, s).Handler())
		t.Cleanup(hs.Close)
		client := &http.Client{Transport: bearer{token: s.token}}
		if transport == "sse" {
			tr = &mcpsdk.SSEClientTransport{Endpoint: hs.URL + s.mcp.BasePath() + mcp.PathSSE, HTTPClient: client}
		} else {
			tr = &mcpsdk.StreamableClientTransport{Endpoint: hs.URL + s.mcp.BasePath() + mcp.PathStreamable, HTTPClient: client}
		}
	case "stdio":
		rc := s.rest
		if rc == nil {
			rc = testenv.AdminConfig(t)
		}
		mode := string(s.kube.Mode)
		if mode == "" {
			mode = "cluster"
		}
		cmd := exec.Command(testenv.NocrdBinary(t), "--transport", "stdio", "--mode", mode, "--namespace", s.kube.Namespace, "--log-level", "error")
		cmd.Env = append(os.Environ(), "KUBECONFIG="+testenv.WriteKubeconfig(t, rc), "REGISTRY_URL="+s.mcp.RegistryURL)
		if s.mcp.DisablePermissionChecks {
			cmd.Args = append(cmd.Args, "--disable-permission-checks")
		}
		if s.mcp.ResourceTools {
			cmd.Args = append(cmd.Args, "--resource-tools")
		}
		cmd.Stderr = testWriter{t}
		tr = &mcpsdk.CommandTransport{Command: cmd}
	default:
		t.Fatalf("unknown transport %q", transport)
	}
	// The legacy SSE client keeps its event stream on Connect's context, so
	// that context must live as long as the session.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	timer := time.AfterFunc(30*time.Second, cancel)
	client := mcpsdk.NewClient(&mcpsdk.Implementation{Name: "nocrd-test", Version: "1"}, opts)
	cs, err := client.Connect(ctx, tr, nil)
	if err != nil {
		t.Fatalf("connect over %s: %v", transport, err)
	}
	timer.Stop()
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// bearer adds an Authorization header when it has a token.
type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if b.token != "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return http.DefaultTransport.RoundTrip(r)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("nocrd: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// result is a tool result decoded for assertions.
type result struct {
	text       string
	isError    bool
	structured map[string]any
}

func call(t *testing.T, cs *mcpsdk.ClientSession, name string, args any) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcpsdk.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: protocol error: %v", name, err)
	}
	r := result{isError: res.IsError}
	for _, c := range res.Content {
		if tc, ok := c.(*mcpsdk.TextContent); ok {
			r.text += tc.Text
		}
	}
	if res.StructuredContent != nil {
		b, err := json.Marshal(res.StructuredContent)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &r.structured); err != nil {
			t.Fatalf("%s: structuredContent is not an object: %s", name, b)
		}
	}
	return r
}

// ok calls a tool that must succeed.
func ok(t *testing.T, cs *mcpsdk.ClientSession, name string, args any) result {
	t.Helper()
	r := call(t, cs, name, args)
	if r.isError {
		t.Fatalf("%s(%v): unexpected error result: %s", name, args, r.text)
	}
	return r
}

// fails calls a tool that must answer with an isError result whose text
// contains want.
func fails(t *testing.T, cs *mcpsdk.ClientSession, name string, args any, want string) {
	t.Helper()
	r := call(t, cs, name, args)
	if !r.isError {
		t.Fatalf("%s(%v): want an error result containing %q, got success: %s", name, args, want, r.text)
	}
	if !strings.Contains(r.text, want) {
		t.Fatalf("%s(%v): error %q does not contain %q", name, args, r.text, want)
	}
}

// get walks a decoded JSON value: get(m, "a", "b", 0, "c").
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			s, _ := v.([]any)
			if k >= len(s) {
				return nil
			}
			v = s[k]
		}
	}
	return v
}
