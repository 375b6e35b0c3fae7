package mcp_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nocrd/nocrd/internal/testcluster"
	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
)

// TestEveryTool drives every tool through a real MCP client over each
// transport and checks the result against what the API server holds.
func TestEveryTool(t *testing.T) {
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			ns := testenv.Namespace(t)
			cs := connect(t, transport, server{kube: k8s.Config{Namespace: ns}})
			admin := testenv.Admin(t)
			ctx := context.Background()

			// The newest protocol is negotiated where the transport has it;
			// legacy SSE stops at the versions that defined it.
			wantVersion := "2026-07-28"
			if transport == "sse" {
				wantVersion = "2025-11-25"
			}
			if v := cs.InitializeResult().ProtocolVersion; v != wantVersion {
				t.Errorf("negotiated protocol %s, want %s", v, wantVersion)
			}

			// Utilities.
			r := ok(t, cs, "current_namespace", map[string]any{})
			if r.text != "Namespace: "+ns+"\nMode: cluster" {
				t.Errorf("current_namespace text = %q", r.text)
			}
			if r.structured["namespace"] != ns || r.structured["mode"] != "cluster" {
				t.Errorf("current_namespace structured = %v", r.structured)
			}
			// Without policies loaded, test_policy says nothing would stop it.
			r = ok(t, cs, "test_policy", map[string]any{"hook": "route", "method": "DELETE"})
			if r.text != "No route policy is loaded: the request would be allowed." || r.structured["decision"] != "allow" || len(r.structured["policies"].([]any)) != 0 {
				t.Errorf("test_policy without policies = %q %v", r.text, r.structured)
			}
			r = ok(t, cs, "check_permissions", map[string]any{})
			if !strings.HasPrefix(r.text, "--- RBAC PERMISSIONS ---\nRESOURCE\tVERB\tALLOWED\n") || !strings.Contains(r.text, "pods\tcreate\t✔ YES") {
				t.Errorf("check_permissions text = %q", r.text)
			}
			if d := get(r.structured, "disabledTools").([]any); len(d) != 0 {
				t.Errorf("admin has disabled tools: %v", d)
			}
			if get(r.structured, "permissions", "pods", "create") != true || get(r.structured, "permissions", "pods/log", "get") != true {
				t.Errorf("check_permissions permissions = %v", r.structured["permissions"])
			}
			r = ok(t, cs, "list_namespaces", map[string]any{})
			nss := toStrings(r.structured["namespaces"])
			if !slices.Contains(nss, ns) || !slices.Contains(nss, "default") || !strings.HasPrefix(r.text, "NAME\n") {
				t.Errorf("list_namespaces = %v / %q", nss, r.text)
			}

			// Templates.
			spec := map[string]any{"containers": []any{map[string]any{
				"name": "main", "image": "busybox:1", "command": []any{"sleep", "infinity"},
				"env": []any{map[string]any{"name": "A", "value": "1"}},
			}}}
			r = ok(t, cs, "create_template", map[string]any{
				"name": "tmpl", "description": "A test sandbox", "tag": "v1", "spec": spec,
				"annotations": map[string]any{"nogoo9/required-context": "PROJECT"},
			})
			if r.text != "Created template tmpl" || r.structured["name"] != "tmpl" || r.structured["namespace"] != ns {
				t.Errorf("create_template = %q %v", r.text, r.structured)
			}
			cm, err := admin.CoreV1().ConfigMaps(ns).Get(ctx, "tmpl", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if cm.Labels["nogoo9/pod-template"] != "true" || cm.Annotations["nogoo9/description"] != "A test sandbox" ||
				cm.Annotations["nogoo9/tag"] != "v1" || !strings.Contains(cm.Data["spec"], `"image":"busybox:1"`) {
				t.Errorf("stored template ConfigMap = %+v", cm)
			}
			r = ok(t, cs, "list_templates", map[string]any{})
			if r.text != "tmpl\tA test sandbox" || get(r.structured, "templates", 0, "tag") != "v1" {
				t.Errorf("list_templates = %q %v", r.text, r.structured)
			}
			r = ok(t, cs, "get_template", map[string]any{"name": "tmpl", "namespace": ns})
			if get(r.structured, "spec", "containers", 0, "image") != "busybox:1" || get(r.structured, "annotations", "nogoo9/required-context") != "PROJECT" {
				t.Errorf("get_template = %v", r.structured)
			}
			spec["containers"].([]any)[0].(map[string]any)["image"] = "busybox:2"
			r = ok(t, cs, "update_template", map[string]any{"name": "tmpl", "tag": "v2", "spec": spec})
			if r.text != "Updated template tmpl" {
				t.Errorf("update_template text = %q", r.text)
			}
			r = ok(t, cs, "get_template", map[string]any{"name": "tmpl"})
			if r.structured["tag"] != "v2" || r.structured["description"] != "A test sandbox" || get(r.structured, "spec", "containers", 0, "image") != "busybox:2" {
				t.Errorf("after update_template: %v", r.structured)
			}
			rr, err := cs.ReadResource(ctx, &mcpsdk.ReadResourceParams{URI: "pod-template://" + ns + "/tmpl"})
			if err != nil {
				t.Fatal(err)
			}
			if len(rr.Contents) != 1 || rr.Contents[0].MIMEType != "application/json" || !strings.Contains(rr.Contents[0].Text, `"busybox:2"`) {
				t.Errorf("pod-template resource = %+v", rr.Contents)
			}

			// Pods.
			r = ok(t, cs, "create_pod_from_template", map[string]any{
				"templateRef": "pod-template://" + ns + "/tmpl", "name": "p1",
				"containerOverrides": []any{map[string]any{"name": "main", "env": []any{
					map[string]any{"name": "A", "value": "9"}, map[string]any{"name": "B", "value": "2"},
				}}},
				"topLevelOverrides": map[string]any{"restartPolicy": "Never"},
			})
			if r.text != "Created pod p1 in namespace "+ns {
				t.Errorf("create_pod_from_template text = %q", r.text)
			}
			p1, err := admin.CoreV1().Pods(ns).Get(ctx, "p1", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if env := envMap(p1.Spec.Containers[0].Env); env["A"] != "9" || env["B"] != "2" || len(env) != 2 {
				t.Errorf("p1 env = %v", env)
			}
			if p1.Spec.RestartPolicy != corev1.RestartPolicyNever || p1.Labels["nogoo9/template"] != "tmpl" || p1.Spec.Containers[0].Image != "busybox:2" {
				t.Errorf("p1 = restartPolicy %s labels %v image %s", p1.Spec.RestartPolicy, p1.Labels, p1.Spec.Containers[0].Image)
			}
			r = ok(t, cs, "create_pod", map[string]any{
				"name": "p2", "containers": []any{map[string]any{"name": "w", "image": "alpine:3", "command": []any{"sleep", "3600"}}},
				"volumes": []any{map[string]any{"name": "scratch", "emptyDir": map[string]any{}}}, "restartPolicy": "Never",
			})
			if r.text != "Created pod p2 in namespace "+ns || r.structured["name"] != "p2" {
				t.Errorf("create_pod = %q %v", r.text, r.structured)
			}
			testenv.Eventually(t, 60*time.Second, "p1 Running with an IP", func() (bool, error) {
				p, err := admin.CoreV1().Pods(ns).Get(ctx, "p1", metav1.GetOptions{})
				return err == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "", err
			})
			r = ok(t, cs, "list_pods", map[string]any{"labelSelector": "nogoo9/template=tmpl"})
			pods := get(r.structured, "pods").([]any)
			if len(pods) != 1 || get(pods[0], "name") != "p1" || get(pods[0], "phase") != "Running" ||
				get(pods[0], "ready") != 1.0 || get(pods[0], "total") != 1.0 || !testcluster.InPodCIDR(get(pods[0], "podIP").(string)) ||
				get(pods[0], "labels", "nogoo9/template") != "tmpl" {
				t.Errorf("list_pods by label = %v", pods)
			}
			if r.text != "NAME\tPHASE\tREADY\tRESTARTS\tPOD-IP\tNODE\np1\tRunning\t1/1\t0\t"+get(pods[0], "podIP").(string)+"\tkwok-node-0" {
				t.Errorf("list_pods text = %q", r.text)
			}
			r = ok(t, cs, "list_pods", map[string]any{"namespace": ns, "limit": 1})
			if n := len(get(r.structured, "pods").([]any)); n != 1 {
				t.Errorf("list_pods limit 1 returned %d pods", n)
			}
			r = ok(t, cs, "list_pods", map[string]any{"fieldSelector": "metadata.name=p2"})
			if pods := get(r.structured, "pods").([]any); len(pods) != 1 || get(pods[0], "name") != "p2" {
				t.Errorf("list_pods by field = %v", pods)
			}
			r = ok(t, cs, "get_pod", map[string]any{"name": "p1"})
			if get(r.structured, "pod", "metadata", "name") != "p1" || get(r.structured, "pod", "kind") != "Pod" || !strings.Contains(r.text, `"kind": "Pod"`) {
				t.Errorf("get_pod = %q", r.text)
			}
			r = ok(t, cs, "patch_pod", map[string]any{"name": "p1", "patch": map[string]any{"metadata": map[string]any{"labels": map[string]any{"mcp-patched": "true"}}}})
			p1, err = admin.CoreV1().Pods(ns).Get(ctx, "p1", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if p1.Labels["mcp-patched"] != "true" || r.structured["resourceVersion"] == "" ||
				r.text != fmt.Sprintf("Patched pod p1 (resourceVersion: %s)", r.structured["resourceVersion"]) {
				t.Errorf("patch_pod = %q, labels %v", r.text, p1.Labels)
			}

			checkLogs(t, cs, ns)

			r = ok(t, cs, "delete_pod", map[string]any{"name": "p2", "gracePeriodSeconds": 0})
			if r.text != "Deleted pod p2 from namespace "+ns {
				t.Errorf("delete_pod text = %q", r.text)
			}
			testenv.Eventually(t, 30*time.Second, "p2 gone", func() (bool, error) {
				_, err := admin.CoreV1().Pods(ns).Get(ctx, "p2", metav1.GetOptions{})
				return apierrors.IsNotFound(err), err
			})
			r = ok(t, cs, "delete_template", map[string]any{"name": "tmpl"})
			if r.text != "Deleted template tmpl" {
				t.Errorf("delete_template text = %q", r.text)
			}
			if _, err := admin.CoreV1().ConfigMaps(ns).Get(ctx, "tmpl", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("template ConfigMap still there: %v", err)
			}
			fails(t, cs, "get_template", map[string]any{"name": "tmpl"}, "template "+ns+"/tmpl not found")
		})
	}
}

// checkLogs points KWOK's simulated kubelet at log files for p1 and reads
// them back through get_pod_logs with every option.
func checkLogs(t *testing.T, cs *mcpsdk.ClientSession, ns string) {
	t.Helper()
	dir := t.TempDir()
	// CRI log lines carry nine fractional digits; RFC3339Nano would drop
	// trailing zeros and not match what the log reader prints back.
	const criTime = "2006-01-02T15:04:05.000000000Z07:00"
	now := time.Now().UTC()
	var cur strings.Builder
	for i := 1; i <= 5; i++ {
		ts := now.Add(-time.Duration(6-i) * time.Hour) // lines 1..4 are hours old; line 5 is new
		if i == 5 {
			ts = now
		}
		fmt.Fprintf(&cur, "%s stdout F line %d\n", ts.Format(criTime), i)
	}
	current, previous := filepath.Join(dir, "current.log"), filepath.Join(dir, "previous.log")
	if err := os.WriteFile(current, []byte(cur.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(previous, []byte(now.Format(criTime)+" stderr F crashed before\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.ServePodLogs(t, ns, "p1", "main", current, previous)
	// KWOK learns of the Logs object through a watch: wait until it serves.
	testenv.Eventually(t, 20*time.Second, "kwok to serve p1's log", func() (bool, error) {
		r := call(t, cs, "get_pod_logs", map[string]any{"name": "p1"})
		return !r.isError && strings.Contains(r.text, "line 5"), fmt.Errorf("%s", r.text)
	})
	r := ok(t, cs, "get_pod_logs", map[string]any{"name": "p1", "namespace": ns, "container": "main"})
	if r.text != "line 1\nline 2\nline 3\nline 4\nline 5\n" || r.structured["logs"] != r.text {
		t.Errorf("full log = %q / %v", r.text, r.structured)
	}
	if r = ok(t, cs, "get_pod_logs", map[string]any{"name": "p1", "tailLines": 2}); r.text != "line 4\nline 5\n" {
		t.Errorf("tailLines 2 = %q", r.text)
	}
	if r = ok(t, cs, "get_pod_logs", map[string]any{"name": "p1", "sinceSeconds": 600}); r.text != "line 5\n" {
		t.Errorf("sinceSeconds 600 = %q", r.text)
	}
	r = ok(t, cs, "get_pod_logs", map[string]any{"name": "p1", "tailLines": 1, "timestamps": true})
	if r.text != now.Format(criTime)+" line 5\n" {
		t.Errorf("timestamps = %q, want %q", r.text, now.Format(criTime)+" line 5\n")
	}
	if r = ok(t, cs, "get_pod_logs", map[string]any{"name": "p1", "limitBytes": 9}); r.text != "line 1\nli" {
		t.Errorf("limitBytes 9 = %q", r.text)
	}
	if r = ok(t, cs, "get_pod_logs", map[string]any{"name": "p1", "previous": true}); r.text != "crashed before\n" {
		t.Errorf("previous = %q", r.text)
	}
}

func envMap(env []corev1.EnvVar) map[string]string {
	m := map[string]string{}
	for _, e := range env {
		m[e.Name] = e.Value
	}
	return m
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
