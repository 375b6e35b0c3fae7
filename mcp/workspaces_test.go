package mcp_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"
	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nocrd/nocrd/internal/auth"
	"github.com/nocrd/nocrd/internal/testcluster"
	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
	"github.com/nocrd/nocrd/mcp"
)

// everyAnnotation is a template using every spawner annotation.
func everyAnnotation(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"nogoo9/pod-template": "true"}, Annotations: map[string]string{
			"nogoo9/description":          "every annotation",
			"nogoo9/required-context":     "PROJECT_NAME,REPO_URL",
			"nogoo9/iam-role-arn":         "arn:aws:iam::123456789012:role/workspace",
			"nogoo9/init-image":           "alpine/git",
			"nogoo9/init-command":         "git clone $REPO_URL /workspace/$PROJECT_NAME",
			"nogoo9/pre-stop-command":     "sync /workspace",
			"nogoo9/default-grace-period": "3",
			"nogoo9/workspace-port":       "8080",
			"nogoo9/ttl":                  "2h",
		}},
		Data: map[string]string{"spec": `{"containers":[{"name":"workspace","image":"node:20-alpine","command":["sleep","infinity"],` +
			`"volumeMounts":[{"name":"ws","mountPath":"/workspace"}]}],"volumes":[{"name":"ws","emptyDir":{}}]}`},
	}
}

// TestWorkspaceLifecycle spawns a workspace from a template that uses every
// spawner annotation, checks the pod and ServiceAccount field by field,
// waits for Ready with progress notifications, lists it, stops it, and sees
// the pod and its ServiceAccount go.
func TestWorkspaceLifecycle(t *testing.T) {
	ns := testenv.Namespace(t)
	admin := testenv.Admin(t)
	ctx := context.Background()
	cm, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, everyAnnotation("full"), metav1.CreateOptions{})
	mustCreate(t, cm, err)

	var mu sync.Mutex
	var progress []string
	cs := connectWith(t, "streamable", server{kube: k8s.Config{Namespace: ns}}, &mcpsdk.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcpsdk.ProgressNotificationClientRequest) {
			mu.Lock()
			defer mu.Unlock()
			progress = append(progress, r.Params.Message)
		},
	})
	params := &mcpsdk.CallToolParams{Name: "spawn_workspace", Arguments: map[string]any{
		"id": "session-1", "templateRef": "full", "wait": true, "timeoutSeconds": 60,
		"context": map[string]any{"PROJECT_NAME": "demo", "REPO_URL": "https://example.com/r.git"},
	}}
	params.SetProgressToken("spawn-1")
	res, err := cs.CallTool(ctx, params)
	if err != nil || res.IsError {
		t.Fatalf("spawn_workspace: %v %+v", err, res)
	}
	out := res.StructuredContent.(map[string]any)
	txt := res.Content[0].(*mcpsdk.TextContent).Text
	if out["id"] != "session-1" || out["podName"] != "ws-anonymous-session-1" || out["ready"] != true ||
		!testcluster.InPodCIDR(out["podIP"].(string)) || out["existing"] != false ||
		txt != "Spawned workspace session-1 (Pod: ws-anonymous-session-1); ready at "+out["podIP"].(string) {
		t.Errorf("spawn_workspace = %q %v", txt, out)
	}
	// The client handles notifications asynchronously: the last one may be
	// handled just after the result.
	want := "workspace session-1: created | workspace session-1: scheduled | workspace session-1: init running | workspace session-1: ready"
	testenv.Eventually(t, 5*time.Second, "every progress notification", func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		got := strings.Join(progress, " | ")
		return got == want, fmt.Errorf("got %q, want %q", got, want)
	})

	pod, err := admin.CoreV1().Pods(ns).Get(ctx, "ws-anonymous-session-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	main := pod.Spec.Containers[0]
	env := envMap(main.Env)
	init := pod.Spec.InitContainers
	checks := map[string]bool{
		"labels":       pod.Labels["nogoo9/type"] == "workspace" && pod.Labels["nogoo9/workspace-id"] == "session-1" && pod.Labels["nogoo9/user-sub"] == "anonymous",
		"context env":  env["PROJECT_NAME"] == "demo" && env["REPO_URL"] == "https://example.com/r.git",
		"init":         len(init) == 1 && init[0].Name == "spawner-init" && init[0].Image == "alpine/git" && init[0].Command[2] == "git clone $REPO_URL /workspace/$PROJECT_NAME",
		"init env":     len(init) == 1 && envMap(init[0].Env)["REPO_URL"] == "https://example.com/r.git",
		"init mounts":  len(init) == 1 && slices.ContainsFunc(init[0].VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "ws" && m.MountPath == "/workspace" }),
		"preStop":      main.Lifecycle != nil && main.Lifecycle.PreStop.Exec.Command[2] == "sync /workspace",
		"grace":        pod.Spec.TerminationGracePeriodSeconds != nil && *pod.Spec.TerminationGracePeriodSeconds == 3,
		"sa":           pod.Spec.ServiceAccountName == "ws-anonymous-session-1",
		"port":         pod.Annotations["nogoo9/workspace-port"] == "8080",
		"expires-at":   pod.Annotations["nogoo9/expires-at"] != "",
		"template ref": pod.Annotations["nogoo9/template-ref"] == ns+"/full",
	}
	for what, ok := range checks {
		if !ok {
			t.Errorf("pod %s wrong: %+v", what, pod)
		}
	}
	if exp, err := time.Parse(time.RFC3339, pod.Annotations["nogoo9/expires-at"]); err != nil || exp.Sub(pod.CreationTimestamp.Time) < 119*time.Minute || exp.Sub(pod.CreationTimestamp.Time) > 121*time.Minute {
		t.Errorf("expires-at %q is not creation + 2h (%v)", pod.Annotations["nogoo9/expires-at"], err)
	}
	sa, err := admin.CoreV1().ServiceAccounts(ns).Get(ctx, "ws-anonymous-session-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sa.Annotations["eks.amazonaws.com/role-arn"] != "arn:aws:iam::123456789012:role/workspace" ||
		len(sa.OwnerReferences) != 1 || sa.OwnerReferences[0].UID != pod.UID || sa.OwnerReferences[0].Kind != "Pod" {
		t.Errorf("service account = %+v", sa.ObjectMeta)
	}

	r := ok(t, cs, "list_workspaces", map[string]any{})
	rows := get(r.structured, "workspaces").([]any)
	if len(rows) != 1 || get(rows[0], "id") != "session-1" || get(rows[0], "owner") != "anonymous" || get(rows[0], "ready") != true ||
		get(rows[0], "template") != ns+"/full" || !strings.HasPrefix(r.text, "ID\tNAME\tSTATUS\nsession-1\tws-anonymous-session-1\tRunning") {
		t.Errorf("list_workspaces = %q %v", r.text, rows)
	}
	r = ok(t, cs, "spawn_workspace", map[string]any{"id": "session-1", "templateRef": "full", "context": map[string]any{"PROJECT_NAME": "demo", "REPO_URL": "x"}})
	if r.structured["existing"] != true || !strings.HasPrefix(r.text, "Workspace session-1 already exists (Pod: ws-anonymous-session-1)") {
		t.Errorf("second spawn = %q %v", r.text, r.structured)
	}

	r = ok(t, cs, "stop_workspace", map[string]any{"id": "session-1"})
	if r.text != "Stopped workspace session-1 (Pod: ws-anonymous-session-1)" || r.structured["status"] != "terminating" {
		t.Errorf("stop_workspace = %q %v", r.text, r.structured)
	}
	fails(t, cs, "spawn_workspace", map[string]any{"id": "session-1", "templateRef": "full", "context": map[string]any{"PROJECT_NAME": "demo", "REPO_URL": "x"}},
		"workspace session-1 in "+ns+" is still terminating")
	pod, err = admin.CoreV1().Pods(ns).Get(ctx, "ws-anonymous-session-1", metav1.GetOptions{})
	if err == nil && (pod.DeletionTimestamp == nil || pod.DeletionGracePeriodSeconds == nil || *pod.DeletionGracePeriodSeconds != 3) {
		t.Errorf("stopped pod is not terminating with the 3 s grace period: %+v", pod.ObjectMeta)
	}
	testenv.Eventually(t, 60*time.Second, "the pod and its ServiceAccount to go", func() (bool, error) {
		_, perr := admin.CoreV1().Pods(ns).Get(ctx, "ws-anonymous-session-1", metav1.GetOptions{})
		_, serr := admin.CoreV1().ServiceAccounts(ns).Get(ctx, "ws-anonymous-session-1", metav1.GetOptions{})
		return apierrors.IsNotFound(perr) && apierrors.IsNotFound(serr), fmt.Errorf("pod: %v, sa: %v", perr, serr)
	})
}

// TestWorkspaceErrors covers refusals: nothing may be left half-made.
func TestWorkspaceErrors(t *testing.T) {
	ns := testenv.Namespace(t)
	admin := testenv.Admin(t)
	ctx := context.Background()
	cm, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, everyAnnotation("full"), metav1.CreateOptions{})
	mustCreate(t, cm, err)
	cs := connect(t, "streamable", server{kube: k8s.Config{Namespace: ns}})
	alice := map[string]any{"sub": "alice"}
	bob := map[string]any{"sub": "bob"}
	inline := map[string]any{"containers": []any{map[string]any{"name": "w", "image": "busybox"}}}

	fails(t, cs, "spawn_workspace", map[string]any{"id": "w1", "templateRef": "full", "context": map[string]any{"PROJECT_NAME": "p"}},
		"missing required context keys REPO_URL (required by nogoo9/required-context)")
	fails(t, cs, "spawn_workspace", map[string]any{"id": "w1", "spec": map[string]any{"containers": []any{map[string]any{"name": "w"}}}}, `container "w" has no image`)
	fails(t, cs, "spawn_workspace", map[string]any{"id": "w1"}, "give a templateRef or an inline spec")
	fails(t, cs, "spawn_workspace", map[string]any{"id": "no spaces", "spec": inline}, "invalid id")
	fails(t, cs, "spawn_workspace", map[string]any{"id": "w1", "spec": inline, "jwtPayload": map[string]any{"name": "x"}}, "jwtPayload: claims have no $.sub")
	fails(t, cs, "spawn_workspace", map[string]any{"id": "w1", "spec": inline, "timeoutSeconds": 9999}, "invalid timeoutSeconds")

	// A create the API server denies (a quota of zero pods) leaves no
	// ServiceAccount behind.
	q, err := admin.CoreV1().ResourceQuotas(ns).Create(ctx, &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "no-pods"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}},
	}, metav1.CreateOptions{})
	mustCreate(t, q, err)
	testenv.Eventually(t, 30*time.Second, "the quota to be enforced", func() (bool, error) {
		r := call(t, cs, "spawn_workspace", map[string]any{"id": "denied", "templateRef": "full", "context": map[string]any{"PROJECT_NAME": "p", "REPO_URL": "r"}})
		return r.isError && strings.Contains(r.text, "spawn failed at create pod") && strings.Contains(r.text, "exceeded quota"), fmt.Errorf("%s", r.text)
	})
	if sas, err := admin.CoreV1().ServiceAccounts(ns).List(ctx, metav1.ListOptions{LabelSelector: "nogoo9/type=workspace"}); err != nil || len(sas.Items) != 0 {
		t.Errorf("a denied spawn left ServiceAccounts behind: %v %v", err, sas.Items)
	}
	if err := admin.CoreV1().ResourceQuotas(ns).Delete(ctx, "no-pods", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// Ownership.
	testenv.Eventually(t, 30*time.Second, "spawning once the quota is gone", func() (bool, error) {
		r := call(t, cs, "spawn_workspace", map[string]any{"id": "mine", "spec": inline, "jwtPayload": alice})
		return !r.isError, fmt.Errorf("%s", r.text)
	})
	fails(t, cs, "spawn_workspace", map[string]any{"id": "mine", "spec": inline, "jwtPayload": bob}, "workspace mine in "+ns+" belongs to another owner")
	fails(t, cs, "stop_workspace", map[string]any{"id": "mine", "jwtPayload": bob}, "belongs to another owner")
	fails(t, cs, "stop_workspace", map[string]any{"id": "mine"}, "belongs to another owner")
	fails(t, cs, "stop_workspace", map[string]any{"id": "ghost"}, "workspace "+ns+"/ghost not found")
	r := ok(t, cs, "list_workspaces", map[string]any{"jwtPayload": bob})
	if rows := get(r.structured, "workspaces").([]any); len(rows) != 0 {
		t.Errorf("bob sees %v", rows)
	}
	r = ok(t, cs, "list_workspaces", map[string]any{"jwtPayload": alice})
	if rows := get(r.structured, "workspaces").([]any); len(rows) != 1 || get(rows[0], "owner") != "alice" || get(rows[0], "name") != "ws-alice-mine" {
		t.Errorf("alice sees %v", rows)
	}

	// Concurrent spawns of one id create one pod.
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			r := call(t, cs, "spawn_workspace", map[string]any{"id": "race", "spec": inline, "jwtPayload": alice})
			if r.isError {
				t.Errorf("concurrent spawn: %s", r.text)
			}
		})
	}
	wg.Wait()
	pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "nogoo9/workspace-id=race"})
	if err != nil || len(pods.Items) != 1 {
		t.Errorf("concurrent spawns made %d pods (%v)", len(pods.Items), err)
	}

	// Two owners racing for one id: exactly one pod survives, and every
	// caller is told either that it has the workspace or that it is not
	// theirs.
	var winners, refused atomic.Int32
	for i := range 8 {
		who := alice
		if i%2 == 1 {
			who = bob
		}
		wg.Go(func() {
			r := call(t, cs, "spawn_workspace", map[string]any{"id": "contested", "spec": inline, "jwtPayload": who})
			switch {
			case !r.isError:
				winners.Add(1)
			case strings.Contains(r.text, "belongs to another owner"):
				refused.Add(1)
			default:
				t.Errorf("contested spawn: %s", r.text)
			}
		})
	}
	wg.Wait()
	testenv.Eventually(t, 30*time.Second, "one contested pod", func() (bool, error) {
		pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "nogoo9/workspace-id=contested"})
		live := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				live++
			}
		}
		return err == nil && live == 1, fmt.Errorf("%d live pods (%v)", live, err)
	})
	if winners.Load() == 0 || winners.Load()+refused.Load() != 8 {
		t.Errorf("contested: %d winners, %d refused", winners.Load(), refused.Load())
	}

	// A pod that cannot be scheduled fails the wait with the reason.
	fails(t, cs, "spawn_workspace", map[string]any{"id": "nowhere", "wait": true, "timeoutSeconds": 30,
		"spec": map[string]any{"nodeSelector": map[string]any{"no-such": "node"}, "containers": []any{map[string]any{"name": "w", "image": "busybox"}}}},
		"unschedulable")
	ok(t, cs, "stop_workspace", map[string]any{"id": "nowhere"})
	ok(t, cs, "stop_workspace", map[string]any{"id": "mine", "jwtPayload": alice})
}

func hs256(t *testing.T, secret, sub string) string {
	t.Helper()
	tok := jwt.New()
	_ = tok.Set(jwt.SubjectKey, sub)
	_ = tok.Set(jwt.ExpirationKey, time.Now().Add(time.Hour))
	b, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256, []byte(secret)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestWorkspacesWithAuth: with AUTH_ENABLED every MCP request needs a
// verified bearer token, its subject owns the workspaces, and jwtPayload
// cannot claim another identity.
func TestWorkspacesWithAuth(t *testing.T) {
	ns := testenv.Namespace(t)
	cfg := auth.Config{Enabled: true, SubJSONPath: "$.sub", JWTSecret: "s3cret"}
	inline := map[string]any{"containers": []any{map[string]any{"name": "w", "image": "busybox"}}}

	// No token, or a bad one: the HTTP layer refuses before MCP starts.
	for _, token := range []string{"", hs256(t, "wrong-secret", "alice"), "garbage"} {
		hs := httptest.NewServer(newServer(t, server{kube: k8s.Config{Namespace: ns}, auth: cfg}).Handler())
		req, _ := http.NewRequest(http.MethodPost, hs.URL+"/mcp", strings.NewReader(initBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("token %q: %s, WWW-Authenticate %q", token, resp.Status, resp.Header.Get("WWW-Authenticate"))
		}
		hs.Close()
	}

	alice := connect(t, "streamable", server{kube: k8s.Config{Namespace: ns}, auth: cfg, token: hs256(t, "s3cret", "alice")})
	bob := connect(t, "streamable", server{kube: k8s.Config{Namespace: ns}, auth: cfg, token: hs256(t, "s3cret", "bob")})
	r := ok(t, alice, "spawn_workspace", map[string]any{"id": "a1", "spec": inline})
	if r.structured["podName"] != "ws-alice-a1" {
		t.Errorf("alice's spawn = %v", r.structured)
	}
	// jwtPayload is ignored when auth is on: bob stays bob.
	r = ok(t, bob, "spawn_workspace", map[string]any{"id": "b1", "spec": inline, "jwtPayload": map[string]any{"sub": "alice"}})
	if r.structured["podName"] != "ws-bob-b1" {
		t.Errorf("bob's spawn with alice's jwtPayload = %v", r.structured)
	}
	fails(t, bob, "stop_workspace", map[string]any{"id": "a1"}, "belongs to another owner")
	fails(t, bob, "stop_workspace", map[string]any{"id": "a1", "jwtPayload": map[string]any{"sub": "alice"}}, "belongs to another owner")
	fails(t, bob, "spawn_workspace", map[string]any{"id": "a1", "spec": inline}, "belongs to another owner")
	for who, cs := range map[string]*mcpsdk.ClientSession{"alice": alice, "bob": bob} {
		r = ok(t, cs, "list_workspaces", map[string]any{})
		rows := get(r.structured, "workspaces").([]any)
		if len(rows) != 1 || get(rows[0], "owner") != who {
			t.Errorf("%s lists %v", who, rows)
		}
	}
	ok(t, alice, "stop_workspace", map[string]any{"id": "a1"})
	ok(t, bob, "stop_workspace", map[string]any{"id": "b1"})
}

// TestPodToolsKeepToOwnWorkspaces: with AUTH_ENABLED the generic pod tools
// are no way round workspace ownership. bob can neither read, patch,
// delete, read the logs of nor list alice's workspace pod, and nobody may
// set or change nocrd's own labels and annotations with patch_pod: not to
// take a workspace over, nor to dress a plain pod up as someone's
// workspace. Each keeps full use of the pod tools on their own pods. Both
// HTTP transports carry the caller (the legacy SSE one on its event
// stream's request).
func TestPodToolsKeepToOwnWorkspaces(t *testing.T) {
	for _, tr := range []string{"streamable", "sse"} {
		t.Run(tr, func(t *testing.T) { podToolsKeepToOwnWorkspaces(t, tr) })
	}
}

func podToolsKeepToOwnWorkspaces(t *testing.T, transport string) {
	ns := testenv.Namespace(t)
	cfg := auth.Config{Enabled: true, SubJSONPath: "$.sub", JWTSecret: "s3cret"}
	inline := map[string]any{"containers": []any{map[string]any{"name": "w", "image": "busybox"}}}
	alice := connect(t, transport, server{kube: k8s.Config{Namespace: ns}, auth: cfg, token: hs256(t, "s3cret", "alice")})
	bob := connect(t, transport, server{kube: k8s.Config{Namespace: ns}, auth: cfg, token: hs256(t, "s3cret", "bob")})
	ok(t, alice, "spawn_workspace", map[string]any{"id": "a1", "spec": inline})
	ok(t, bob, "spawn_workspace", map[string]any{"id": "b1", "spec": inline})
	labels := func(m map[string]any) map[string]any { return map[string]any{"metadata": map[string]any{"labels": m}} }
	takeOver := map[string]any{"metadata": map[string]any{"labels": map[string]any{"nogoo9/user-sub": "bob"}, "annotations": map[string]any{"nogoo9/owner": "bob"}}}

	const foreign = "is workspace a1, which belongs to another owner"
	fails(t, bob, "get_pod", map[string]any{"name": "ws-alice-a1"}, foreign)
	fails(t, bob, "get_pod_logs", map[string]any{"name": "ws-alice-a1"}, foreign)
	fails(t, bob, "patch_pod", map[string]any{"name": "ws-alice-a1", "patch": takeOver}, foreign)
	fails(t, bob, "patch_pod", map[string]any{"name": "ws-alice-a1", "patch": labels(map[string]any{"team": "x"})}, foreign)
	fails(t, bob, "delete_pod", map[string]any{"name": "ws-alice-a1", "gracePeriodSeconds": 0}, foreign)
	r := ok(t, bob, "list_pods", map[string]any{})
	var names []string
	for _, p := range get(r.structured, "pods").([]any) {
		names = append(names, get(p, "name").(string))
	}
	if slices.Contains(names, "ws-alice-a1") || !slices.Contains(names, "ws-bob-b1") {
		t.Errorf("bob lists %v", names)
	}

	// Nor can anyone change what is a workspace and whose.
	fails(t, alice, "patch_pod", map[string]any{"name": "ws-alice-a1", "patch": takeOver}, "nocrd's own labels and annotations")
	fails(t, alice, "patch_pod", map[string]any{"name": "ws-alice-a1", "patch": labels(map[string]any{"nogoo9/type": nil})}, "nocrd's own labels and annotations")
	ok(t, bob, "create_pod", map[string]any{"name": "plain", "containers": []any{map[string]any{"name": "c", "image": "busybox"}}})
	fails(t, bob, "patch_pod", map[string]any{"name": "plain", "patch": map[string]any{"metadata": map[string]any{
		"labels":      map[string]any{"nogoo9/type": "workspace", "nogoo9/workspace-id": "a1", "nogoo9/user-sub": "alice"},
		"annotations": map[string]any{"nogoo9/owner": "alice"},
	}}}, "nocrd's own labels and annotations")

	// alice still owns a1 (the proxy's notion of it too), and both keep
	// the tools for their own pods.
	r = ok(t, alice, "list_workspaces", map[string]any{})
	if rows := get(r.structured, "workspaces").([]any); len(rows) != 1 || get(rows[0], "owner") != "alice" || get(rows[0], "id") != "a1" {
		t.Errorf("alice's workspaces: %v", rows)
	}
	ok(t, alice, "patch_pod", map[string]any{"name": "ws-alice-a1", "patch": labels(map[string]any{"team": "x"})})
	r = ok(t, alice, "get_pod", map[string]any{"name": "ws-alice-a1"})
	if l := get(get(get(r.structured, "pod"), "metadata"), "labels"); get(l, "team") != "x" || get(l, "nogoo9/user-sub") != "alice" {
		t.Errorf("alice's pod labels: %v", l)
	}
	ok(t, bob, "patch_pod", map[string]any{"name": "plain", "patch": labels(map[string]any{"team": "y"})})
	ok(t, bob, "delete_pod", map[string]any{"name": "plain", "gracePeriodSeconds": 0})
	ok(t, alice, "delete_pod", map[string]any{"name": "ws-alice-a1", "gracePeriodSeconds": 0})
	ok(t, bob, "stop_workspace", map[string]any{"id": "b1"})
}

// TestSSESessionsAreTheirOpenersOnly: a message to a legacy SSE session
// runs as the user who opened it, so only that user may post to it; bob
// holding alice's session id gets what an unknown session gets.
func TestSSESessionsAreTheirOpenersOnly(t *testing.T) {
	ns := testenv.Namespace(t)
	cfg := auth.Config{Enabled: true, SubJSONPath: "$.sub", JWTSecret: "s3cret"}
	hs := httptest.NewServer(newServer(t, server{kube: k8s.Config{Namespace: ns}, auth: cfg}).Handler())
	t.Cleanup(hs.Close)
	alice, bob := hs256(t, "s3cret", "alice"), hs256(t, "s3cret", "bob")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+mcp.PathSSE, nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var endpoint string
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		if v, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			endpoint = strings.TrimSpace(v)
			break
		}
	}
	if !strings.Contains(endpoint, "sessionid=") {
		t.Fatalf("no endpoint event; got %q", endpoint)
	}
	as := func(token string) map[string]string { return map[string]string{"Authorization": "Bearer " + token} }
	if s := post(t, hs.URL+endpoint, as(bob)).StatusCode; s != http.StatusNotFound {
		t.Errorf("bob posting to alice's session: %d, want 404", s)
	}
	if s := post(t, hs.URL+endpoint, nil).StatusCode; s != http.StatusUnauthorized {
		t.Errorf("posting without a token: %d, want 401", s)
	}
	if s := post(t, hs.URL+endpoint, as(alice)).StatusCode; s != http.StatusAccepted {
		t.Errorf("alice posting to her session: %d, want 202", s)
	}
}
