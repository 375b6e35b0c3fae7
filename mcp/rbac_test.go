package mcp_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
	"github.com/nocrd/nocrd/mcp"
)

var (
	allTools = []string{
		"check_permissions", "create_pod", "create_pod_from_template", "create_template", "current_namespace",
		"delete_pod", "delete_template", "get_pod", "get_pod_logs", "get_template", "list_namespaces",
		"list_pods", "list_registry_images", "list_templates", "list_workspaces", "patch_pod", "spawn_workspace",
		"stop_workspace", "test_policy", "update_template",
	}
	templateTools = []string{"create_pod_from_template", "create_template", "delete_template", "get_template", "list_templates", "update_template"}
)

func readParams(uri string) *mcpsdk.ReadResourceParams { return &mcpsdk.ReadResourceParams{URI: uri} }

func toolNames(t *testing.T, cs *mcpsdk.ClientSession) []string {
	t.Helper()
	var names []string
	for tool, err := range cs.Tools(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

// TestRoleWithoutConfigMapRights runs the server as a ServiceAccount whose
// Role grants pods but no configmaps: the template tools must not be
// registered, and check_permissions must say why.
func TestRoleWithoutConfigMapRights(t *testing.T) {
	ns := testenv.Namespace(t)
	rc := testenv.ServiceAccountConfig(t, ns, "limited")
	grant(t, ns, "pods-only", "limited",
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "create", "delete", "patch"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}})
	testenv.WaitAllowed(t, rc, ns, "create", "pods")

	for _, transport := range []string{"streamable", "stdio"} {
		t.Run(transport, func(t *testing.T) {
			cs := connect(t, transport, server{kube: k8s.Config{Mode: k8s.ModeNamespaced, Namespace: ns}, rest: rc})
			names := toolNames(t, cs)
			for _, tool := range templateTools {
				if slices.Contains(names, tool) {
					t.Errorf("%s is registered for an identity without configmap rights", tool)
				}
			}
			for _, tool := range []string{"list_pods", "get_pod", "create_pod", "delete_pod", "patch_pod", "get_pod_logs", "list_namespaces", "check_permissions"} {
				if !slices.Contains(names, tool) {
					t.Errorf("%s is missing; tools = %v", tool, names)
				}
			}
			res := ok(t, cs, "check_permissions", map[string]any{})
			disabled := toStrings(res.structured["disabledTools"])
			slices.Sort(disabled)
			if !slices.Equal(disabled, templateTools) {
				t.Errorf("disabledTools = %v, want %v", disabled, templateTools)
			}
			if get(res.structured, "permissions", "configmaps", "list") != false || get(res.structured, "permissions", "pods", "create") != true {
				t.Errorf("permissions = %v", res.structured["permissions"])
			}
			if !strings.Contains(res.text, "configmaps\tlist\t✘ NO") || !strings.Contains(res.text, "pods\tlist\t✔ YES") {
				t.Errorf("check_permissions text = %q", res.text)
			}
			// The pod tools really work with this identity.
			ok(t, cs, "list_pods", map[string]any{})
		})
	}
}

// TestDeployManifests applies deploy/'s RBAC manifests to the test cluster
// and checks that an identity bound by them gets every tool, so the
// manifests cannot rot.
func TestDeployManifests(t *testing.T) {
	for _, c := range []struct {
		file string
		mode k8s.Mode
	}{
		{"rbac-namespaced.yaml", k8s.ModeNamespaced},
		{"rbac-cluster.yaml", k8s.ModeCluster},
	} {
		t.Run(c.file, func(t *testing.T) {
			ns := testenv.Namespace(t)
			data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "deploy", c.file))
			if err != nil {
				t.Fatal(err)
			}
			testenv.ApplyYAML(t, strings.ReplaceAll(string(data), "namespace: nogoo9", "namespace: "+ns))
			rc := testenv.ServiceAccountConfig(t, ns, "nogoo-mcp")
			testenv.WaitAllowed(t, rc, ns, "update", "configmaps")
			cs := connect(t, "streamable", server{kube: k8s.Config{Mode: c.mode, Namespace: ns}, rest: rc})
			if names := toolNames(t, cs); !slices.Equal(names, allTools) {
				t.Errorf("tools = %v, want %v", names, allTools)
			}
			res := ok(t, cs, "check_permissions", map[string]any{})
			if d := toStrings(res.structured["disabledTools"]); len(d) != 0 {
				t.Errorf("disabled tools under %s: %v", c.file, d)
			}
			ok(t, cs, "list_templates", map[string]any{})
			ok(t, cs, "list_namespaces", map[string]any{})
		})
	}
}

// TestDisablePermissionChecks runs the server as an identity with no rights
// at all: by default only the tools that need none are registered; with
// permission checks disabled every tool is, and the API server is the one
// that refuses.
func TestDisablePermissionChecks(t *testing.T) {
	ns := testenv.Namespace(t)
	rc := testenv.ServiceAccountConfig(t, ns, "nobody")
	kube := k8s.Config{Mode: k8s.ModeNamespaced, Namespace: ns}

	cs := connect(t, "streamable", server{kube: kube, rest: rc})
	if names := toolNames(t, cs); !slices.Equal(names, []string{"check_permissions", "current_namespace", "list_namespaces", "list_registry_images", "test_policy"}) {
		t.Errorf("tools without rights = %v", names)
	}
	for _, transport := range []string{"streamable", "stdio"} {
		cs = connect(t, transport, server{kube: kube, rest: rc, mcp: mcp.Config{DisablePermissionChecks: true}})
		if names := toolNames(t, cs); !slices.Equal(names, allTools) {
			t.Errorf("%s: tools with checks disabled = %v", transport, names)
		}
		fails(t, cs, "list_pods", map[string]any{}, "forbidden")
	}
}

// TestListNamespacesFiltersByPodAccess: as in no-crd, list_namespaces
// returns the namespaces where the identity may list pods, not every
// namespace it can see.
func TestListNamespacesFiltersByPodAccess(t *testing.T) {
	home, visible := testenv.Namespace(t), testenv.Namespace(t)
	admin := testenv.Admin(t)
	ctx := context.Background()
	rc := testenv.ServiceAccountConfig(t, home, "lister")
	name := "nocrd-test-" + home
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "lister", Namespace: home}}
	cr, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list"}}},
	}, metav1.CreateOptions{})
	mustCreate(t, cr, err)
	t.Cleanup(func() { _ = admin.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	crb, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
		Subjects:   subject,
	}, metav1.CreateOptions{})
	mustCreate(t, crb, err)
	t.Cleanup(func() {
		_ = admin.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	role, err := admin.RbacV1().Roles(visible).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-lister"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}},
	}, metav1.CreateOptions{})
	mustCreate(t, role, err)
	rb, err := admin.RbacV1().RoleBindings(visible).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-lister"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pod-lister"},
		Subjects:   subject,
	}, metav1.CreateOptions{})
	mustCreate(t, rb, err)
	testenv.WaitAllowed(t, rc, "", "list", "namespaces")
	testenv.WaitAllowed(t, rc, visible, "list", "pods")

	cs := connect(t, "streamable", server{kube: k8s.Config{Namespace: home}, rest: rc})
	r := ok(t, cs, "list_namespaces", map[string]any{})
	if got := toStrings(r.structured["namespaces"]); !slices.Equal(got, []string{visible}) {
		t.Errorf("list_namespaces = %v, want [%s]", got, visible)
	}
	// With cluster-wide pod access every namespace is listed.
	cs = connect(t, "streamable", server{kube: k8s.Config{Namespace: home}})
	r = ok(t, cs, "list_namespaces", map[string]any{})
	if got := toStrings(r.structured["namespaces"]); !slices.Contains(got, home) || !slices.Contains(got, visible) || !slices.Contains(got, "kube-system") {
		t.Errorf("admin list_namespaces = %v", got)
	}
}

// TestPermissionsChangeAfterStart: rights granted after start-up register
// their tools when check_permissions next asks, and rights revoked
// withdraw them; the client is told with tools/list_changed each time.
func TestPermissionsChangeAfterStart(t *testing.T) {
	ns := testenv.Namespace(t)
	admin := testenv.Admin(t)
	ctx := context.Background()
	for _, transport := range []string{"streamable", "stdio"} {
		t.Run(transport, func(t *testing.T) {
			sa := "later-" + transport
			rc := testenv.ServiceAccountConfig(t, ns, sa)
			bind := func(name string, resources ...string) {
				grant(t, ns, name, sa, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: resources, Verbs: []string{"get", "list", "watch", "create", "update", "delete", "patch"}})
			}
			bind(sa+"-pods", "pods")
			testenv.WaitAllowed(t, rc, ns, "create", "pods")

			changed := make(chan struct{}, 8)
			cs := connectWith(t, transport, server{kube: k8s.Config{Mode: k8s.ModeNamespaced, Namespace: ns}, rest: rc},
				&mcpsdk.ClientOptions{ToolListChangedHandler: func(context.Context, *mcpsdk.ToolListChangedRequest) { changed <- struct{}{} }})
			hasTemplateTools := func() bool {
				names := toolNames(t, cs)
				n := 0
				for _, tool := range templateTools {
					if slices.Contains(names, tool) {
						n++
					}
				}
				if n != 0 && n != len(templateTools) {
					t.Fatalf("some template tools only: %v", names)
				}
				return n > 0
			}
			if hasTemplateTools() {
				t.Fatal("template tools registered without configmap rights")
			}
			// Asking with nothing changed changes nothing.
			ok(t, cs, "check_permissions", map[string]any{})
			select {
			case <-changed:
				t.Error("tools/list_changed with no change in rights")
			case <-time.After(300 * time.Millisecond):
			}

			bind(sa+"-configmaps", "configmaps")
			testenv.WaitAllowed(t, rc, ns, "delete", "configmaps")
			if hasTemplateTools() {
				t.Fatal("template tools registered before check_permissions asked")
			}
			r := ok(t, cs, "check_permissions", map[string]any{})
			if slices.ContainsFunc(toStrings(r.structured["disabledTools"]), func(s string) bool { return slices.Contains(templateTools, s) }) {
				t.Fatalf("after the grant: %v", r.structured)
			}
			select {
			case <-changed:
			case <-time.After(5 * time.Second):
				t.Fatal("no tools/list_changed after the grant")
			}
			if !hasTemplateTools() {
				t.Fatal("template tools not registered after the grant")
			}
			ok(t, cs, "list_templates", map[string]any{})

			if err := admin.RbacV1().RoleBindings(ns).Delete(ctx, sa+"-configmaps", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 10*time.Second, "the revoked rights to be withdrawn", func() (bool, error) {
				r := ok(t, cs, "check_permissions", map[string]any{})
				return slices.Contains(toStrings(r.structured["disabledTools"]), "list_templates"), nil
			})
			select {
			case <-changed:
			case <-time.After(5 * time.Second):
				t.Fatal("no tools/list_changed after the revocation")
			}
			if hasTemplateTools() {
				t.Fatal("template tools still registered after the revocation")
			}
			if _, err := cs.CallTool(ctx, &mcpsdk.CallToolParams{Name: "list_templates", Arguments: map[string]any{}}); err == nil || !strings.Contains(err.Error(), "unknown tool") {
				t.Errorf("list_templates after the revocation: %v", err)
			}
		})
	}
}

// grant creates the Role name with rules in ns and binds it, under the
// same name, to the ServiceAccount sa.
func grant(t *testing.T, ns, name, sa string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	admin, ctx := testenv.Admin(t), context.Background()
	r, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{})
	mustCreate(t, r, err)
	rb, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}},
	}, metav1.CreateOptions{})
	mustCreate(t, rb, err)
}
