package mcp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nocrd/nocrd/internal/auth"
	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
	"github.com/nocrd/nocrd/mcp"
)

// resourceToolNames are the generic resource tools, offered only with
// RESOURCE_TOOLS.
var resourceToolNames = []string{"resource_apply", "resource_get", "resource_list"}

// TestResourceTools drives k-mcp's generic tools through a real client
// over every transport, in namespaced mode, and pins their tools/list
// entries to testdata/tools_resources.golden.json (UPDATE_GOLDEN=1).
func TestResourceTools(t *testing.T) {
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			ns := testenv.Namespace(t)
			cs := connect(t, transport, server{kube: k8s.Config{Mode: k8s.ModeNamespaced, Namespace: ns}, mcp: mcp.Config{ResourceTools: true}})
			var tools []*mcpsdk.Tool
			for tool, err := range cs.Tools(context.Background(), nil) {
				if err != nil {
					t.Fatal(err)
				}
				if slices.Contains(resourceToolNames, tool.Name) {
					tools = append(tools, tool)
				}
			}
			got, _ := json.MarshalIndent(tools, "", "  ")
			got = append(got, '\n')
			path := filepath.Join("testdata", "tools_resources.golden.json")
			if os.Getenv("UPDATE_GOLDEN") != "" && transport == "streamable" {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if want, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
				t.Errorf("the resource tools differ from %s (%v); run with UPDATE_GOLDEN=1 if deliberate:\n%s", path, err, got)
			}

			manifest := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels: {app: demo}\ndata: {mode: fast}\n"
			r := ok(t, cs, "resource_apply", map[string]any{"manifest": manifest, "dryRun": true})
			if get(r.structured, "dryRun") != true || get(r.structured, "results", 0, "action") != "created" || !strings.Contains(r.text, "dry run") {
				t.Errorf("dry run: %s %v", r.text, r.structured)
			}
			fails(t, cs, "resource_get", map[string]any{"resource": "cm", "name": "settings"}, "not found")
			r = ok(t, cs, "resource_apply", map[string]any{"manifest": manifest})
			if r.text != "configmap/settings in "+ns+" created" || get(r.structured, "results", 0, "namespace") != ns {
				t.Errorf("apply: %q %v", r.text, r.structured)
			}
			r = ok(t, cs, "resource_list", map[string]any{"resource": "configmaps", "labelSelector": "app=demo"})
			if get(r.structured, "kind") != "ConfigMap" || get(r.structured, "items", 0, "name") != "settings" ||
				get(r.structured, "items", 0, "labels", "app") != "demo" || !strings.Contains(r.text, "configmaps in namespace "+ns) {
				t.Errorf("list: %s %v", r.text, r.structured)
			}
			// kubectl get's columns.
			if lines := strings.Split(r.text, "\n"); len(lines) < 3 || !regexp.MustCompile(`^NAME +DATA +AGE$`).MatchString(lines[1]) ||
				!regexp.MustCompile(`^settings +1 +\S+$`).MatchString(lines[2]) ||
				get(r.structured, "columns", 0) != "Data" || get(r.structured, "items", 0, "columns", "Data") != float64(1) {
				t.Errorf("list's columns: %q %v", r.text, r.structured)
			}
			r = ok(t, cs, "resource_list", map[string]any{"resource": "deploy"})
			if items, _ := get(r.structured, "items").([]any); items == nil || len(items) != 0 || !strings.HasPrefix(r.text, "No deployments.apps found") {
				t.Errorf("empty list: %s %v", r.text, r.structured)
			}
			r = ok(t, cs, "resource_get", map[string]any{"resource": "ConfigMap", "name": "settings"})
			if get(r.structured, "object", "data", "mode") != "fast" || get(r.structured, "object", "metadata", "managedFields") != nil || get(r.structured, "events") != nil {
				t.Errorf("get: %v", r.structured)
			}
			r = ok(t, cs, "resource_get", map[string]any{"resource": "ConfigMap", "name": "settings", "events": true})
			if events, _ := get(r.structured, "events").([]any); events == nil || len(events) != 0 || !strings.HasSuffix(r.text, "\n\nEvents: <none>") {
				t.Errorf("get with events, before any: %q %v", r.text, r.structured)
			}
			admin := testenv.Admin(t)
			settings, err := admin.CoreV1().ConfigMaps(ns).Get(context.Background(), "settings", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = admin.CoreV1().Events(ns).Create(context.Background(), &corev1.Event{ObjectMeta: metav1.ObjectMeta{GenerateName: "settings-"},
				InvolvedObject: corev1.ObjectReference{Kind: "ConfigMap", Namespace: ns, Name: "settings", UID: settings.UID},
				Type:           "Warning", Reason: "Tested", Message: "looked at", Count: 2, Source: corev1.EventSource{Component: "tester"},
				LastTimestamp: metav1.Now()}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			r = ok(t, cs, "resource_get", map[string]any{"resource": "ConfigMap", "name": "settings", "events": true})
			if !regexp.MustCompile(`\n\nEvents:\nTYPE +REASON +AGE +FROM +MESSAGE\nWarning +Tested +\S+ \(x2\) +tester +looked at$`).MatchString(r.text) ||
				get(r.structured, "events", 0, "reason") != "Tested" || get(r.structured, "events", 0, "count") != float64(2) {
				t.Errorf("get with events: %q %v", r.text, get(r.structured, "events"))
			}

			fails(t, cs, "resource_list", map[string]any{"resource": "configmapz"}, `resource type "configmapz": not found on this API server; did you mean configmaps?`)
			fails(t, cs, "resource_list", map[string]any{"resource": "secrets"}, `resource type "secrets": not found on this API server`)
			fails(t, cs, "resource_get", map[string]any{"resource": "sa", "name": "default"}, "not found on this API server")
			fails(t, cs, "resource_list", map[string]any{"resource": "nodes"}, "cluster-scoped, outside this server's scope")
			fails(t, cs, "resource_list", map[string]any{"resource": "cm", "namespace": "kube-system"}, "outside this server's scope")
			fails(t, cs, "resource_list", map[string]any{"resource": "cm", "allNamespaces": true}, "namespaced mode allows only")
			fails(t, cs, "resource_apply", map[string]any{"manifest": "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"}, "create_pod")
			fails(t, cs, "resource_apply", map[string]any{"manifest": "kind: ["}, "not YAML or JSON")
			fails(t, cs, "resource_list", map[string]any{}, `missing properties: ["resource"]`)
			fails(t, cs, "resource_list", map[string]any{"resource": " "}, `" " is not a resource type`)
		})
	}
}

// TestResourceApplyConfirmation: with a client that can ask its user,
// resource_apply asks them to confirm what the dry run found, and applies
// only on a yes; over every transport, so both the protocol's question
// within the call (before 2026-07-28: SSE here) and the call answered with
// a question and made again (2026-07-28: streamable HTTP and stdio).
func TestResourceApplyConfirmation(t *testing.T) {
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			t.Parallel()
			ns := testenv.Namespace(t)
			admin := testenv.Admin(t)
			var mu sync.Mutex
			var asked []string
			answer := &mcpsdk.ElicitResult{Action: "decline"}
			cs := connectWith(t, transport, server{kube: k8s.Config{Mode: k8s.ModeNamespaced, Namespace: ns}, mcp: mcp.Config{ResourceTools: true}},
				&mcpsdk.ClientOptions{ElicitationHandler: func(_ context.Context, req *mcpsdk.ElicitRequest) (*mcpsdk.ElicitResult, error) {
					mu.Lock()
					defer mu.Unlock()
					asked = append(asked, req.Params.Message)
					return answer, nil
				}})
			setAnswer := func(r *mcpsdk.ElicitResult) {
				mu.Lock()
				defer mu.Unlock()
				answer, asked = r, nil
			}
			questions := func() []string {
				mu.Lock()
				defer mu.Unlock()
				return slices.Clone(asked)
			}
			exists := func(name string) bool {
				_, err := admin.CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
				return err == nil
			}
			manifest := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: two}\n"

			for _, no := range []*mcpsdk.ElicitResult{
				{Action: "decline"},
				{Action: "cancel"},
				{Action: "accept", Content: map[string]any{"confirm": false}},
			} {
				setAnswer(no)
				r := ok(t, cs, "resource_apply", map[string]any{"manifest": manifest})
				q := questions()
				if len(q) != 1 || !strings.Contains(q[0], "- configmap/one in "+ns+" created\n- configmap/two in "+ns+" created") {
					t.Errorf("%+v: asked %q", no, q)
				}
				if get(r.structured, "notConfirmed") != true || !strings.Contains(r.text, "Nothing was applied") {
					t.Errorf("%+v: %s %v", no, r.text, r.structured)
				}
				if exists("one") || exists("two") {
					t.Fatalf("%+v: applied without a yes", no)
				}
			}

			// A dry run asks nothing; a manifest that fails it asks nothing.
			setAnswer(&mcpsdk.ElicitResult{Action: "accept", Content: map[string]any{"confirm": true}})
			ok(t, cs, "resource_apply", map[string]any{"manifest": manifest, "dryRun": true})
			fails(t, cs, "resource_apply", map[string]any{"manifest": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Bad_Name}\n"}, "fails a dry run")
			if q := questions(); len(q) != 0 {
				t.Errorf("asked %q for a dry run or a failing manifest", q)
			}

			r := ok(t, cs, "resource_apply", map[string]any{"manifest": manifest})
			if q := questions(); len(q) != 1 || get(r.structured, "notConfirmed") != nil || get(r.structured, "results", 1, "action") != "created" {
				t.Errorf("confirmed: asked %q; %s %v", q, r.text, r.structured)
			}
			if !exists("one") || !exists("two") {
				t.Error("confirmed, but not applied")
			}
			setAnswer(&mcpsdk.ElicitResult{Action: "accept", Content: map[string]any{"confirm": true}})
			ok(t, cs, "resource_apply", map[string]any{"manifest": manifest})
			if q := questions(); len(q) != 1 || !strings.Contains(q[0], "configmap/one in "+ns+" configured") {
				t.Errorf("applied again: asked %q", q)
			}
		})
	}
}

// TestResourceListAllNamespaces: in cluster mode resource_list lists in
// every namespace, with a NAMESPACE column, as kubectl get -A prints.
func TestResourceListAllNamespaces(t *testing.T) {
	ns, other := testenv.Namespace(t), testenv.Namespace(t)
	admin := testenv.Admin(t)
	for _, n := range []string{ns, other} {
		cm, err := admin.CoreV1().ConfigMaps(n).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: map[string]string{"test": ns}}}, metav1.CreateOptions{})
		mustCreate(t, cm, err)
	}
	cs := connect(t, "streamable", server{kube: k8s.Config{Mode: k8s.ModeCluster, Namespace: ns}, mcp: mcp.Config{ResourceTools: true}})
	r := ok(t, cs, "resource_list", map[string]any{"resource": "configmaps", "allNamespaces": true, "labelSelector": "test=" + ns})
	lines := strings.Split(strings.TrimRight(r.text, "\n"), "\n")
	if len(lines) != 4 || lines[0] != "configmaps in all namespaces:" || !strings.HasPrefix(lines[1], "NAMESPACE") ||
		!strings.HasPrefix(lines[2], min(ns, other)+" ") || !strings.HasPrefix(lines[3], max(ns, other)+" ") ||
		get(r.structured, "namespace") != nil || get(r.structured, "namespaced") != true {
		t.Errorf("all namespaces: %q %v", r.text, r.structured)
	}
	if n0, n1 := get(r.structured, "items", 0, "namespace"), get(r.structured, "items", 1, "namespace"); n0 == n1 {
		t.Errorf("items from one namespace: %v", r.structured)
	}
}

// TestResourceToolsAreOptIn: without RESOURCE_TOOLS the generic tools are
// not offered.
func TestResourceToolsAreOptIn(t *testing.T) {
	cs := connect(t, "streamable", server{kube: k8s.Config{Namespace: testenv.Namespace(t)}})
	for tool, err := range cs.Tools(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(resourceToolNames, tool.Name) {
			t.Errorf("%s is offered without RESOURCE_TOOLS", tool.Name)
		}
	}
}

// TestResourceToolsCallerToken: with RESOURCE_TOOLS_CALLER_TOKEN the
// resource tools call Kubernetes with the caller's own token, so each
// caller gets what RBAC gives them and not the server's (admin) reach;
// with AUTH_ENABLED, nocrd verifies the token first (here the cluster's
// service-account tokens, by the cluster's signing key) over both HTTP
// transports.
func TestResourceToolsCallerToken(t *testing.T) {
	ns := testenv.Namespace(t)
	admin := testenv.Admin(t)
	ctx := context.Background()
	reader := testenv.ServiceAccountConfig(t, ns, "reader")
	nobody := testenv.ServiceAccountConfig(t, ns, "nobody")
	grant(t, ns, "cm-reader", "reader", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"}})
	testenv.WaitAllowed(t, reader, ns, "list", "configmaps")
	cm, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "visible"}}, metav1.CreateOptions{})
	mustCreate(t, cm, err)

	key, issuer := testenv.ServiceAccountKey(t)
	for _, tc := range []struct {
		name       string
		auth       auth.Config
		transports []string
	}{
		{"without AUTH_ENABLED", auth.Config{}, []string{"streamable"}},
		{"with AUTH_ENABLED", auth.Config{Enabled: true, JWTPublicKey: key, Issuer: issuer, SubJSONPath: "$.sub"}, []string{"streamable", "sse"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := server{kube: k8s.Config{Mode: k8s.ModeNamespaced, Namespace: ns}, mcp: mcp.Config{ResourceTools: true, ResourceToolsCallerToken: true}, auth: tc.auth}
			for _, transport := range tc.transports {
				s.token = reader.BearerToken
				cs := connect(t, transport, s)
				r := ok(t, cs, "resource_list", map[string]any{"resource": "cm", "fieldSelector": "metadata.name=visible"})
				if get(r.structured, "items", 0, "name") != "visible" {
					t.Errorf("%s: reader's list: %v", transport, r.structured)
				}
				ok(t, cs, "resource_get", map[string]any{"resource": "cm", "name": "visible"})
				who := "system:serviceaccount:" + ns + ":reader"
				fails(t, cs, "resource_list", map[string]any{"resource": "deploy"}, `deployments.apps is forbidden: User "`+who+`"`)
				fails(t, cs, "resource_apply", map[string]any{"manifest": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: mine}\n"}, `User "`+who+`" cannot`)
				if _, err := admin.CoreV1().ConfigMaps(ns).Get(ctx, "mine", metav1.GetOptions{}); err == nil {
					t.Errorf("%s: the reader's apply created mine", transport)
				}

				s.token = nobody.BearerToken
				fails(t, connect(t, transport, s), "resource_list", map[string]any{"resource": "cm"}, `User "system:serviceaccount:`+ns+`:nobody" cannot list`)
			}
			if !tc.auth.Enabled {
				s.token = ""
				fails(t, connect(t, "streamable", s), "resource_list", map[string]any{"resource": "cm"}, "send Authorization: Bearer")
			}
		})
	}
}
