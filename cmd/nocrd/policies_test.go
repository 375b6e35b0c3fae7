package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwt"
	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/valyala/fasthttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nocrd/nocrd/internal/metrics"
	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/proxy"
	policies "github.com/nocrd/nocrd/wasm-policies"
)

// buildPolicy builds an example policy with the standard Go toolchain, as
// make policies does.
func buildPolicy(t testing.TB, dir, name string) string {
	t.Helper()
	out := filepath.Join(dir, name+".wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./wasm-policies/examples/"+name)
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build policy %s: %v\n%s", name, err, b)
	}
	return out
}

// watPolicy builds a WebAssembly-text guest of wasm-policies/testdata.
func watPolicy(t testing.TB, dir, name string) string {
	t.Helper()
	out := filepath.Join(dir, name+".wasm")
	if b, err := exec.Command("wat2wasm", filepath.Join(testenv.RepoRoot(), "wasm-policies", "testdata", name+".wat"), "-o", out).CombinedOutput(); err != nil {
		t.Fatalf("wat2wasm %s (make deps installs wabt): %v\n%s", name, err, b)
	}
	return out
}

func callTool(t *testing.T, cs *mcpsdk.ClientSession, name string, args map[string]any) *mcpsdk.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcpsdk.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res
}

func resultText(res *mcpsdk.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcpsdk.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// TestPolicies runs the example policies in the real binary: admission
// through the real MCP tools on the test cluster, route policies (a Go
// guest and a WAT guest) through the real proxy, reload of a changed
// module, and the metrics they count.
func TestPolicies(t *testing.T) {
	ns := testenv.Namespace(t)
	s := newSigner(t)
	dir := t.TempDir()
	inject := buildPolicy(t, dir, "inject-identity")
	quota := buildPolicy(t, dir, "quota")
	registry := buildPolicy(t, dir, "registry-allowlist")
	viewer := buildPolicy(t, dir, "viewer")
	gate := filepath.Join(dir, "gate.wasm")
	if err := os.Rename(watPolicy(t, dir, "readonly"), gate); err != nil {
		t.Fatal(err)
	}
	base := startNocrd(t, ns, s,
		"POLICY_ROUTE="+inject+","+viewer+","+gate, "POLICY_CONFIG_INJECT_IDENTITY=X-Workspace-User",
		"POLICY_SPAWN="+registry+","+quota, "POLICY_CONFIG_REGISTRY_ALLOWLIST=busybox,registry.internal/",
		`POLICY_CONFIG_QUOTA={"maxWorkspaces": 2, "cpu": "1", "memory": "1Gi"}`,
		"POLICY_CACHE_DIR="+filepath.Join(dir, "cache"), "POLICY_WATCH_INTERVAL=100ms")
	alice := s.token(t, "alice", nil)
	viewerToken := s.token(t, "alice", func(tok jwt.Token) { _ = tok.Set("roles", []string{"viewer"}) })
	cs := mcpClient(t, base, alice, nil)
	admin := testenv.Admin(t)
	spec := func(image string, limits map[string]string) map[string]any {
		c := map[string]any{"name": "w", "image": image}
		if limits != nil {
			c["resources"] = map[string]any{"limits": limits}
		}
		return map[string]any{"containers": []any{c}}
	}

	t.Run("admission", func(t *testing.T) {
		// Admitted, with the quota's limits added by its JSON Patch.
		res := callTool(t, cs, "spawn_workspace", map[string]any{"id": "p1", "spec": spec("busybox", nil)})
		if res.IsError {
			t.Fatalf("p1 was refused: %s", resultText(res))
		}
		pod, err := admin.CoreV1().Pods(ns).Get(context.Background(), res.StructuredContent.(map[string]any)["podName"].(string), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		lim := pod.Spec.Containers[0].Resources.Limits
		if lim.Cpu().String() != "1" || lim.Memory().String() != "1Gi" || pod.Labels["nogoo9/user-sub"] != "alice" {
			t.Errorf("admitted pod: limits %v, labels %v", lim, pod.Labels)
		}

		for _, c := range []struct {
			name string
			args map[string]any
			want string
		}{
			{"image from elsewhere", map[string]any{"id": "p2", "spec": spec("evil.example/miner", nil)}, "registry-allowlist: image evil.example/miner of container w is not from an allowed registry"},
			{"CPU over the cap", map[string]any{"id": "p2", "spec": spec("busybox", map[string]string{"cpu": "4"})}, "quota: container w asks for 4 CPU; the cap is 1"},
		} {
			res := callTool(t, cs, "spawn_workspace", c.args)
			if !res.IsError || !strings.Contains(resultText(res), c.want) {
				t.Errorf("%s: isError=%v %q, want %q", c.name, res.IsError, resultText(res), c.want)
			}
		}
		// Nothing was created for the refusals.
		pods, err := admin.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "nogoo9/workspace-id=p2"})
		if err != nil || len(pods.Items) != 0 {
			t.Errorf("a refused spawn left %d pods (%v)", len(pods.Items), err)
		}

		// The quota counts the owner's live workspaces.
		if res := callTool(t, cs, "spawn_workspace", map[string]any{"id": "p2", "spec": spec("registry.internal/tools", nil)}); res.IsError {
			t.Fatalf("p2: %s", resultText(res))
		}
		res = callTool(t, cs, "spawn_workspace", map[string]any{"id": "p3", "spec": spec("busybox", nil)})
		if !res.IsError || !strings.Contains(resultText(res), "quota: at most 2 workspaces per owner; you have 2") {
			t.Errorf("third workspace: isError=%v %q", res.IsError, resultText(res))
		}

		// Stopped workspaces no longer count.
		for _, id := range []string{"p1", "p2"} {
			if res := callTool(t, cs, "stop_workspace", map[string]any{"id": id}); res.IsError {
				t.Fatalf("stop %s: %s", id, resultText(res))
			}
		}

		// create_pod_from_template goes through the same admission.
		if res := callTool(t, cs, "create_template", map[string]any{"name": "outside", "spec": spec("docker.io/library/nginx", nil)}); res.IsError {
			t.Fatalf("create_template: %s", resultText(res))
		}
		res = callTool(t, cs, "create_pod_from_template", map[string]any{"templateRef": "outside", "name": "from-outside"})
		if !res.IsError || !strings.Contains(resultText(res), "docker.io/library/nginx") {
			t.Errorf("pod from a template with a foreign image: isError=%v %q", res.IsError, resultText(res))
		}
		// Neither the third workspace nor the pod from the template exists.
		if pods, err := admin.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "nogoo9/workspace-id=p3"}); err != nil || len(pods.Items) != 0 {
			t.Errorf("the refused third workspace left %d pods (%v)", len(pods.Items), err)
		}
		if _, err := admin.CoreV1().Pods(ns).Get(context.Background(), "from-outside", metav1.GetOptions{}); err == nil {
			t.Error("the refused pod from a template was created")
		}

		// So does create_pod: the allow-list is no way round by making the
		// pod directly, and the quota's limits are added to it too.
		res = callTool(t, cs, "create_pod", map[string]any{"name": "direct-outside", "containers": []any{map[string]any{"name": "c", "image": "evil.example/miner"}}})
		if !res.IsError || !strings.Contains(resultText(res), "registry-allowlist: image evil.example/miner") {
			t.Errorf("create_pod with a foreign image: isError=%v %q", res.IsError, resultText(res))
		}
		if _, err := admin.CoreV1().Pods(ns).Get(context.Background(), "direct-outside", metav1.GetOptions{}); err == nil {
			t.Error("the refused create_pod was created")
		}
		if res := callTool(t, cs, "create_pod", map[string]any{"name": "direct", "containers": []any{map[string]any{"name": "c", "image": "busybox"}}}); res.IsError {
			t.Fatalf("create_pod with an allowed image: %s", resultText(res))
		}
		direct, err := admin.CoreV1().Pods(ns).Get(context.Background(), "direct", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if lim := direct.Spec.Containers[0].Resources.Limits; lim.Cpu().String() != "1" || lim.Memory().String() != "1Gi" {
			t.Errorf("create_pod's pod: limits %v, want the quota's", lim)
		}

		// And patch_pod: a patch cannot bring in a foreign image, and what
		// the policies change in a patch is what is applied.
		res = callTool(t, cs, "patch_pod", map[string]any{"name": "direct", "patch": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "c", "image": "evil.example/miner"}}}}})
		if !res.IsError || !strings.Contains(resultText(res), "registry-allowlist: image evil.example/miner") {
			t.Errorf("patch_pod to a foreign image: isError=%v %q", res.IsError, resultText(res))
		}
		if res := callTool(t, cs, "patch_pod", map[string]any{"name": "direct", "patch": map[string]any{
			"metadata": map[string]any{"labels": map[string]any{"team": "x"}},
			"spec":     map[string]any{"containers": []any{map[string]any{"name": "c", "image": "registry.internal/tools"}}},
		}}); res.IsError {
			t.Fatalf("patch_pod to an allowed image: %s", resultText(res))
		}
		if res := callTool(t, cs, "patch_pod", map[string]any{"name": "direct", "patch": map[string]any{"spec": map[string]any{"containers": []any{
			map[string]any{"name": "c", "resources": map[string]any{"limits": nil}}}}}}); res.IsError {
			t.Fatalf("patch_pod dropping the limits: %s", resultText(res))
		}
		direct, err = admin.CoreV1().Pods(ns).Get(context.Background(), "direct", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c := direct.Spec.Containers[0]; c.Image != "registry.internal/tools" || direct.Labels["team"] != "x" || c.Resources.Limits.Cpu().String() != "1" {
			t.Errorf("after the patches: image %s, labels %v, limits %v; want the allowed image, team=x and the quota's limits kept", c.Image, direct.Labels, c.Resources.Limits)
		}
	})

	t.Run("route", func(t *testing.T) {
		ip := spawn(t, cs, "r1", nil)
		ws := startWorkspaceServer(t, "alice-r1", net.JoinHostPort(ip, "3000"))
		auth := map[string]string{"Authorization": "Bearer " + alice, "X-Workspace-User": "mallory", "X-Nocrd-Subject": "mallory"}
		resp, b := do(t, "GET", base+"/route/r1/files", auth, nil)
		var e echo
		if err := json.Unmarshal(b, &e); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET: %d %s", resp.StatusCode, b)
		}
		if got := e.Header.Values("X-Workspace-User"); len(got) != 1 || got[0] != "alice" || e.Header.Get("X-Nocrd-Subject") != "" {
			t.Errorf("the workspace saw X-Workspace-User %q, X-Nocrd-Subject %q", got, e.Header.Get("X-Nocrd-Subject"))
		}
		before := ws.hits.Load()
		resp, b = do(t, "POST", base+"/route/r1/files", auth, strings.NewReader("x"))
		if resp.StatusCode != http.StatusForbidden || string(b) != "read-only workspace" {
			t.Errorf("POST: %d %q, want the WAT policy's 403", resp.StatusCode, b)
		}
		// The viewer policy: alice's token with the role viewer may read,
		// and nothing else; its refusal comes before the WAT policy's.
		asViewer := map[string]string{"Authorization": "Bearer " + viewerToken}
		if resp, b := do(t, "GET", base+"/route/r1/files", asViewer, nil); resp.StatusCode != 200 {
			t.Errorf("viewer GET: %d %s", resp.StatusCode, b)
		}
		viewerRefused := func() {
			t.Helper()
			resp, b := do(t, "DELETE", base+"/route/r1/files", asViewer, nil)
			if resp.StatusCode != http.StatusForbidden || string(b) != "viewer: the role viewer may only read (GET, HEAD, OPTIONS); DELETE refused" {
				t.Errorf("viewer DELETE: %d %q, want the viewer policy's 403", resp.StatusCode, b)
			}
		}
		viewerRefused()
		if ws.hits.Load() != before+1 {
			t.Errorf("the workspace got %d requests, want only the viewer's GET", ws.hits.Load()-before)
		}

		// Reload: a bad module leaves the policy in force; a good one
		// replaces it.
		if err := os.WriteFile(gate+".tmp", []byte("\x00asm\x01\x00\x00\x00garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(gate+".tmp", gate); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond) // several watch intervals
		if resp, b := do(t, "POST", base+"/route/r1/files", auth, strings.NewReader("x")); resp.StatusCode != http.StatusForbidden {
			t.Errorf("after a bad module: %d %q, want the old policy's 403", resp.StatusCode, b)
		}
		allow := watPolicy(t, t.TempDir(), "inject")
		if err := os.Rename(allow, gate); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 10*time.Second, "the new route policy", func() (bool, error) {
			resp, b := do(t, "POST", base+"/route/r1/files", auth, strings.NewReader("x"))
			return resp.StatusCode == 200, fmt.Errorf("POST %d %s", resp.StatusCode, b)
		})
		viewerRefused() // with the WAT gate gone, the viewer policy still refuses

		_, metrics := do(t, "GET", base+"/metrics", nil, nil)
		for series, least := range map[string]float64{
			`nocrd_policy_decisions_total{policy="gate",hook="route",outcome="deny"}`:               2, // and the tries before the reload
			`nocrd_policy_decisions_total{policy="inject-identity",hook="route",outcome="allow"}`:   4,
			`nocrd_policy_decisions_total{policy="viewer",hook="route",outcome="deny"}`:             2,
			`nocrd_policy_decisions_total{policy="quota",hook="spawn",outcome="deny"}`:              2,
			`nocrd_policy_decisions_total{policy="quota",hook="spawn",outcome="answer"}`:            3, // admitted with limits added
			`nocrd_policy_decisions_total{policy="registry-allowlist",hook="spawn",outcome="deny"}`: 2,
			`nocrd_proxy_requests_total{outcome="policy_denied",status="403"}`:                      2,
		} {
			if v := metricValue(string(metrics), series); v < least {
				t.Errorf("%s = %v, want at least %v", series, v, least)
			}
		}
	})

	t.Run("test_policy", func(t *testing.T) {
		// The WAT gate was replaced by an allow-all guest in "route".
		metricsBefore := func() string { _, m := do(t, "GET", base+"/metrics", nil, nil); return string(m) }
		series := []string{
			`nocrd_policy_decisions_total{policy="viewer",hook="route",outcome="deny"}`,
			`nocrd_policy_decisions_total{policy="quota",hook="spawn",outcome="answer"}`,
		}
		before := metricsBefore()
		pods, err := admin.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range testPolicyCases {
			res := callTool(t, cs, "test_policy", c.in)
			out, _ := res.StructuredContent.(map[string]any)
			if res.IsError {
				t.Errorf("%s: isError %s", c.name, resultText(res))
				continue
			}
			checkDecision(t, c.name, out, c.decision, c.policy, c.status, c.check)
		}
		// The caller's own identity is the default: alice's token has no
		// viewer role, so her DELETE is allowed, with her name injected.
		res := callTool(t, cs, "test_policy", map[string]any{"hook": "route", "method": "DELETE"})
		out, _ := res.StructuredContent.(map[string]any)
		checkDecision(t, "caller's own identity", out, "allow", "", 0, func(out map[string]any) string {
			if h := out["request"].(map[string]any)["headers"].(map[string]any); h["X-Workspace-User"] != "alice" {
				return fmt.Sprintf("headers %v", h)
			}
			return ""
		})
		for _, bad := range []struct {
			args map[string]any
			want string
		}{
			{map[string]any{"hook": "admission"}, `hook: "admission" is not route or spawn`},
			{map[string]any{"hook": "spawn"}, "review: the spawn hook needs"},
			{map[string]any{"hook": "spawn", "review": map[string]any{"operation": "spawn_workspace"}}, "review: pod is required"},
			{map[string]any{"hook": "spawn", "review": map[string]any{"pod": podJSON("busybox"), "podd": 1}}, `unknown field "podd"`},
			{map[string]any{"hook": "route", "headers": map[string]any{"X-Nocrd-Subject": "root"}}, "X-Nocrd-Subject is set by nocrd"},
			{map[string]any{"hook": "route", "path": "files"}, "path: \"files\" must start with /"},
		} {
			res := callTool(t, cs, "test_policy", bad.args)
			if !res.IsError || !strings.Contains(resultText(res), bad.want) {
				t.Errorf("%v: isError=%v %q, want %q", bad.args, res.IsError, resultText(res), bad.want)
			}
		}
		// No side effects: no decision counted, no pod created.
		after := metricsBefore()
		for _, s := range series {
			if metricValue(before, s) != metricValue(after, s) {
				t.Errorf("%s went from %v to %v", s, metricValue(before, s), metricValue(after, s))
			}
		}
		if now, err := admin.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{}); err != nil || len(now.Items) != len(pods.Items) {
			t.Errorf("test_policy changed the pods: %d before, %d after (%v)", len(pods.Items), len(now.Items), err)
		}
	})
}

// testPolicyCases run through test_policy (MCP) and nocrd test-policy
// (CLI) against POLICY_ROUTE=inject-identity,viewer and
// POLICY_SPAWN=registry-allowlist,quota configured as in TestPolicies.
var testPolicyCases = []struct {
	name     string
	in       map[string]any
	decision string
	policy   string
	status   float64
	check    func(out map[string]any) string // "" when right
}{
	{name: "viewer DELETE", in: map[string]any{"hook": "route", "method": "DELETE", "path": "/files", "subject": "alice", "claims": map[string]any{"roles": []any{"viewer"}}},
		decision: "deny", policy: "viewer", status: 403},
	{name: "GET with identity injected", in: map[string]any{"hook": "route", "path": "/files?q=1", "subject": "bob", "headers": map[string]any{"X-Workspace-User": "mallory"}},
		decision: "allow", check: func(out map[string]any) string {
			req, _ := out["request"].(map[string]any)
			h, _ := req["headers"].(map[string]any)
			if req["path"] != "/files?q=1" || h["X-Workspace-User"] != "bob" || h[proxy.HeaderSubject] != nil || h[proxy.HeaderWorkspace] != nil {
				return fmt.Sprintf("forwarded request %v", req)
			}
			return ""
		}},
	{name: "foreign image", in: map[string]any{"hook": "spawn", "review": map[string]any{"pod": podJSON("evil.example/miner")}},
		decision: "deny", policy: "registry-allowlist", status: 403},
	{name: "quota full", in: map[string]any{"hook": "spawn", "review": map[string]any{"pod": podJSON("busybox"), "workspaces": map[string]any{"count": 2}}},
		decision: "deny", policy: "quota", status: 403},
	{name: "admitted with limits", in: map[string]any{"hook": "spawn", "review": map[string]any{"pod": podJSON("busybox")}},
		decision: "allow", check: func(out map[string]any) string {
			pod, _ := out["pod"].(map[string]any)
			b, _ := json.Marshal(pod)
			if !strings.Contains(string(b), `"limits":{"cpu":"1","memory":"1Gi"}`) {
				return "pod " + string(b)
			}
			return ""
		}},
}

func podJSON(image string) map[string]any {
	return map[string]any{"metadata": map[string]any{"name": "t"}, "spec": map[string]any{"containers": []any{map[string]any{"name": "w", "image": image}}}}
}

func checkDecision(t *testing.T, name string, out map[string]any, decision, policy string, status float64, check func(map[string]any) string) {
	t.Helper()
	if out["decision"] != decision || decision != "allow" && (out["policy"] != policy || out["status"] != status || out["reason"] == "") {
		t.Errorf("%s: %v, want %s by %q with %v", name, out, decision, policy, status)
	}
	if check != nil {
		if msg := check(out); msg != "" {
			t.Errorf("%s: %s", name, msg)
		}
	}
}

// metricValue returns the value of one series in a Prometheus exposition,
// or -1 when it is absent.
func metricValue(exposition, series string) float64 {
	for _, line := range strings.Split(exposition, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}

// TestBadPolicyStopsStartUp: a module that cannot be used fails start-up
// with its file and the reason.
func TestBadPolicyStopsStartUp(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "broken.wasm")
	if err := os.WriteFile(bad, []byte("not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.NocrdBinary(t), "--port", "0", "--host", "127.0.0.1")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+testenv.Kubeconfig(t), "POLICY_ROUTE="+bad, "POLICY_CACHE_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), bad) || !strings.Contains(string(out), "not a valid WebAssembly module") {
		t.Fatalf("exit %v, output %s", err, out)
	}
}

// TestTestPolicyCommand: nocrd test-policy runs the same cases as the
// test_policy tool, printing the decision as JSON, with exit status 0 when
// allowed, 1 when denied and 2 for bad input.
func TestTestPolicyCommand(t *testing.T) {
	dir := t.TempDir()
	env := append(os.Environ(),
		"POLICY_ROUTE="+buildPolicy(t, dir, "inject-identity")+","+buildPolicy(t, dir, "viewer"),
		"POLICY_SPAWN="+buildPolicy(t, dir, "registry-allowlist")+","+buildPolicy(t, dir, "quota"),
		"POLICY_CONFIG_REGISTRY_ALLOWLIST=busybox,registry.internal/",
		`POLICY_CONFIG_QUOTA={"maxWorkspaces": 2, "cpu": "1", "memory": "1Gi"}`,
		"POLICY_CACHE_DIR="+filepath.Join(dir, "cache"))
	run := func(stdin string) (int, map[string]any, string) {
		cmd := exec.Command(testenv.NocrdBinary(t), "test-policy", "-n", "team-a")
		cmd.Env = env
		cmd.Stdin = strings.NewReader(stdin)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		code := 0
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		if stdout.Len() > 0 {
			if err := json.Unmarshal([]byte(stdout.String()), &out); err != nil {
				t.Fatalf("stdout is not JSON: %v\n%s", err, stdout.String())
			}
		}
		return code, out, stderr.String()
	}
	for _, c := range testPolicyCases {
		in, _ := json.Marshal(c.in)
		code, out, stderr := run(string(in))
		want := map[string]int{"allow": 0, "deny": 1}[c.decision]
		if code != want {
			t.Errorf("%s: exit %d, want %d; stderr %s", c.name, code, want, stderr)
		}
		checkDecision(t, c.name, out, c.decision, c.policy, c.status, c.check)
	}
	// The review's namespace defaults to the one configured.
	in := `{"hook":"spawn","review":{"pod":{"metadata":{"name":"t"},"spec":{"containers":[{"name":"w","image":"busybox"}]}}}}`
	if code, out, stderr := run(in); code != 0 || out["pod"].(map[string]any)["metadata"].(map[string]any)["namespace"] != "team-a" {
		t.Errorf("namespace: exit %d, %v %s", code, out, stderr)
	}
	for stdin, want := range map[string]string{
		`{"hook":"route","method":"GET /x"}`: `method: "GET /x" is not an HTTP method`,
		`{"hook":"route","verb":"GET"}`:      `unknown field "verb"`,
		`not json`:                           "stdin: not a test_policy input",
	} {
		if code, _, stderr := run(stdin); code != 2 || !strings.Contains(stderr, want) {
			t.Errorf("%s: exit %d, stderr %q, want 2 and %q", stdin, code, stderr, want)
		}
	}
	// A module that is missing or does not load is bad input, not a deny.
	garbage := filepath.Join(dir, "garbage.wasm")
	if err := os.WriteFile(garbage, []byte("not wasm"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := env
	for module, want := range map[string]string{
		filepath.Join(dir, "missing.wasm"): "missing.wasm",
		garbage:                            "garbage.wasm",
	} {
		env = append(slices.Clone(good), "POLICY_ROUTE="+module)
		if code, out, stderr := run(`{"hook":"route","method":"GET","path":"/"}`); code != 2 || out != nil || !strings.Contains(stderr, want) {
			t.Errorf("POLICY_ROUTE=%s: exit %d, stdout %v, stderr %q, want 2 and a message naming %s", module, code, out, stderr, want)
		}
	}
}

// TestFaultyPolicies: a route policy that traps, loops forever, exhausts
// its memory, answers garbage, smuggles a header or reads the body the
// proxy streams is a deny (403, nothing forwarded) within its deadline,
// every time, and the server keeps serving; a module with the wrong
// exports stops start-up.
func TestFaultyPolicies(t *testing.T) {
	ns := testenv.Namespace(t)
	s := newSigner(t)
	alice := s.token(t, "alice", nil)
	plain := startNocrd(t, ns, s)
	ip := spawn(t, mcpClient(t, plain, alice, nil), "f1", nil)
	ws := startWorkspaceServer(t, "alice-f1", net.JoinHostPort(ip, "3000"))
	dir := t.TempDir()
	for _, c := range []struct{ guest, outcome string }{
		{"trap", "trap"},
		{"loop", "timeout"},
		{"bomb", "trap"},
		{"badnext", "malformed"},
		{"badstatus", "trap"},
		{"smuggle", "trap"},
		// A guest that reads the body the proxy streams on (and, before,
		// read it as empty and let anything through).
		{"bodyscan", "trap"},
	} {
		t.Run(c.guest, func(t *testing.T) {
			t.Parallel()
			base := startNocrd(t, ns, s, "POLICY_ROUTE="+watPolicy(t, dir, c.guest), "POLICY_ROUTE_TIMEOUT=50ms",
				"POLICY_MEMORY_LIMIT_MB=2", "POLICY_CACHE_DIR="+filepath.Join(dir, "cache-"+c.guest))
			auth := map[string]string{"Authorization": "Bearer " + alice}
			before := ws.hits.Load()
			for i := range 3 {
				start := time.Now()
				resp, b := do(t, "POST", base+"/route/f1/files", auth, strings.NewReader("x"))
				took := time.Since(start)
				var e struct{ Error, Detail string }
				if resp.StatusCode != http.StatusForbidden || json.Unmarshal(b, &e) != nil || !strings.Contains(e.Detail, "policy") {
					t.Errorf("request %d: %d %s, want 403 with a JSON error", i, resp.StatusCode, b)
				}
				if took > 2*time.Second {
					t.Errorf("request %d took %s", i, took)
				}
			}
			if ws.hits.Load() != before {
				t.Error("a request reached the workspace past a failed policy")
			}
			// Still serving: readiness, MCP and the metrics.
			if resp, b := do(t, "GET", base+"/readyz", nil, nil); resp.StatusCode != 200 {
				t.Errorf("readyz %d %s", resp.StatusCode, b)
			}
			if res := callTool(t, mcpClient(t, base, alice, nil), "list_workspaces", map[string]any{}); res.IsError {
				t.Errorf("list_workspaces: %s", resultText(res))
			}
			_, metrics := do(t, "GET", base+"/metrics", nil, nil)
			series := fmt.Sprintf(`nocrd_policy_decisions_total{policy=%q,hook="route",outcome=%q}`, c.guest, c.outcome)
			if v := metricValue(string(metrics), series); v != 3 {
				t.Errorf("%s = %v, want 3", series, v)
			}
		})
	}
	// Not parallel, so before the subtests above, which count the
	// workspace's hits: a request without a body reads as having an empty
	// one, and goes through bodyscan.
	t.Run("bodyscan without a body", func(t *testing.T) {
		base := startNocrd(t, ns, s, "POLICY_ROUTE="+watPolicy(t, dir, "bodyscan"), "POLICY_CACHE_DIR="+filepath.Join(dir, "cache-get"))
		if resp, b := do(t, "GET", base+"/route/f1/files", map[string]string{"Authorization": "Bearer " + alice}, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("GET without a body: %d %s", resp.StatusCode, b)
		}
	})
	t.Run("wrong exports", func(t *testing.T) {
		cmd := exec.Command(testenv.NocrdBinary(t), "--port", "0", "--host", "127.0.0.1")
		bad := watPolicy(t, t.TempDir(), "noexport")
		cmd.Env = append(os.Environ(), "KUBECONFIG="+testenv.Kubeconfig(t), "POLICY_ROUTE="+bad, "POLICY_CACHE_DIR="+t.TempDir())
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), bad+": exports no handle_request function") {
			t.Errorf("exit %v, output %s", err, out)
		}
	})
}

// TestPoliciesReloadOnSIGHUP: with file watching off, a changed module
// takes effect on SIGHUP and not before, and stop ends the reloading and
// closes the policies.
func TestPoliciesReloadOnSIGHUP(t *testing.T) {
	// A SIGHUP that arrives before openPolicies' handler is in place must
	// not end the test process (the default action), so the test listens
	// too.
	hup := make(chan os.Signal, 16)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// Modules are put in place by renaming, as TestPolicies does.
	gate := filepath.Join(t.TempDir(), "gate.wasm")
	if err := os.Rename(watPolicy(t, t.TempDir(), "readonly"), gate); err != nil {
		t.Fatal(err)
	}
	cfg := policies.Config{Route: []string{gate}, RouteTimeout: time.Second, SpawnTimeout: time.Second, MemoryLimitMB: 64} // Watch 0: no file watching
	set, stop, err := openPolicies(context.Background(), cfg, metrics.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	post := func() (bool, error) { // whether the route policies let a POST through
		var req fasthttp.Request
		req.Header.SetMethod(http.MethodPost)
		req.SetRequestURI("/files")
		fr := fastRequest{req: proxy.NewUpstream(&req), info: proxy.RouteInfo{Subject: []byte("alice"), Workspace: []byte("w1"), Owner: "alice"}}
		var resp policies.Response
		next, _, err := set.Chain(policies.HookRoute).Handle(&fr, &resp)
		return next, err
	}
	if next, err := post(); next || err != nil {
		t.Fatalf("readonly: next=%v err=%v, want a refusal", next, err)
	}
	if err := os.Rename(watPolicy(t, t.TempDir(), "inject"), gate); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if next, err := post(); next || err != nil {
		t.Fatalf("a changed module took effect without SIGHUP (next=%v err=%v)", next, err)
	}
	// The handler may not be in place yet: signal until the change shows.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if next, err := post(); err != nil {
			t.Fatal(err)
		} else if next {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not put the changed module in force")
		}
	}
	stop()
	var fe *policies.FaultError
	if _, err := post(); !errors.As(err, &fe) || fe.Reason != "unavailable" {
		t.Errorf("after stop: %v, want the closed policies to fail as unavailable", err)
	}
}
