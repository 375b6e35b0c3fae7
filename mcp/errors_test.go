package mcp_test

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
)

func mustCreate[T any](t *testing.T, _ *T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func busybox(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox"}}},
	}
}

func templateCM(name, spec string, isTemplate bool) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"spec": spec}}
	if isTemplate {
		cm.Labels = map[string]string{"nogoo9/pod-template": "true"}
	}
	return cm
}

// TestBadInput checks that every kind of bad input gets an isError result
// that says what was wrong, and that the server keeps serving.
func TestBadInput(t *testing.T) {
	ns := testenv.Namespace(t)
	admin := testenv.Admin(t)
	ctx := context.Background()
	pod, err := admin.CoreV1().Pods(ns).Create(ctx, busybox("existing"), metav1.CreateOptions{})
	mustCreate(t, pod, err)
	cm, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, templateCM("plain", `{"containers":[{"name":"a","image":"b"}]}`, false), metav1.CreateOptions{})
	mustCreate(t, cm, err)
	cm, err = admin.CoreV1().ConfigMaps(ns).Create(ctx, templateCM("broken", `{"containers": "nope"}`, true), metav1.CreateOptions{})
	mustCreate(t, cm, err)
	cm, err = admin.CoreV1().ConfigMaps(ns).Create(ctx, templateCM("good", `{"containers":[{"name":"main","image":"busybox"}]}`, true), metav1.CreateOptions{})
	mustCreate(t, cm, err)

	cs := connect(t, "streamable", server{kube: k8s.Config{Namespace: ns}})
	container := map[string]any{"name": "c", "image": "busybox"}
	cases := []struct {
		name string
		tool string
		args map[string]any
		want string
	}{
		{"missing required argument", "get_pod", map[string]any{}, "name"},
		{"wrong argument type", "get_pod", map[string]any{"name": 42}, "name"},
		{"invalid pod name", "get_pod", map[string]any{"name": "Bad_Name!"}, `invalid name: "Bad_Name!" is not a valid name`},
		{"unknown pod", "get_pod", map[string]any{"name": "ghost"}, `pods "ghost" not found`},
		{"invalid namespace", "list_pods", map[string]any{"namespace": "Bad NS"}, "invalid namespace"},
		{"bad label selector", "list_pods", map[string]any{"labelSelector": "a in ("}, "invalid labelSelector"},
		{"bad field selector", "list_pods", map[string]any{"fieldSelector": "nonsense"}, "invalid fieldSelector"},
		{"negative limit", "list_pods", map[string]any{"limit": -5}, "invalid limit: must not be negative"},
		{"no containers", "create_pod", map[string]any{"name": "x", "containers": []any{}}, "at least one container"},
		{"container without image", "create_pod", map[string]any{"name": "x", "containers": []any{map[string]any{"name": "c"}}}, `container "c" has no image`},
		{"unknown container field", "create_pod", map[string]any{"name": "x", "containers": []any{map[string]any{"name": "c", "image": "i", "imagee": "typo"}}}, `unknown field "containers[0].imagee"`},
		{"bad restart policy", "create_pod", map[string]any{"name": "x", "containers": []any{container}, "restartPolicy": "Sometimes"}, "restartPolicy must be Always, OnFailure or Never"},
		{"duplicate pod", "create_pod", map[string]any{"name": "existing", "containers": []any{container}}, "already exists"},
		{"invalid patch", "patch_pod", map[string]any{"name": "existing", "patch": map[string]any{"spec": map[string]any{"containers": "x"}}}, "patch pod " + ns + "/existing"},
		{"patch of unknown pod", "patch_pod", map[string]any{"name": "ghost", "patch": map[string]any{"metadata": map[string]any{}}}, `pods "ghost" not found`},
		{"negative grace period", "delete_pod", map[string]any{"name": "existing", "gracePeriodSeconds": -1}, "invalid gracePeriodSeconds: must not be negative"},
		{"delete unknown pod", "delete_pod", map[string]any{"name": "ghost"}, `pods "ghost" not found`},
		{"negative tailLines", "get_pod_logs", map[string]any{"name": "existing", "tailLines": -1}, "invalid tailLines"},
		{"zero limitBytes", "get_pod_logs", map[string]any{"name": "existing", "limitBytes": 0}, "invalid limitBytes: must be positive"},
		{"unknown container logs", "get_pod_logs", map[string]any{"name": "existing", "container": "nope"}, "nope"},
		{"spec not JSON", "create_template", map[string]any{"name": "t1", "spec": "not json"}, "not a valid PodSpec"},
		{"spec without containers", "create_template", map[string]any{"name": "t1", "spec": map[string]any{"containers": []any{}}}, "at least one container"},
		{"template name invalid", "create_template", map[string]any{"name": "UPPER", "spec": map[string]any{"containers": []any{container}}}, "invalid name"},
		{"plain ConfigMap is no template", "get_template", map[string]any{"name": "plain"}, "not labelled nogoo9/pod-template=true"},
		{"plain ConfigMap is never deleted", "delete_template", map[string]any{"name": "plain"}, "not labelled nogoo9/pod-template=true"},
		{"plain ConfigMap is never updated", "update_template", map[string]any{"name": "plain", "tag": "x"}, "not labelled nogoo9/pod-template=true"},
		{"template label cannot be removed", "update_template", map[string]any{"name": "good", "labels": map[string]any{"nogoo9/pod-template": ""}}, "cannot be changed"},
		{"unknown template", "update_template", map[string]any{"name": "ghost", "tag": "x"}, "template " + ns + "/ghost not found"},
		{"bad templateRef", "create_pod_from_template", map[string]any{"templateRef": "a/b/c", "name": "x"}, "use pod-template://namespace/name"},
		{"empty templateRef", "create_pod_from_template", map[string]any{"templateRef": "", "name": "x"}, "invalid templateRef: must not be empty"},
		{"invalid template spec", "create_pod_from_template", map[string]any{"templateRef": "broken", "name": "x"}, "is not usable"},
		{"override of unknown container", "create_pod_from_template", map[string]any{"templateRef": "good", "name": "x", "containerOverrides": []any{map[string]any{"name": "ghost", "image": "i"}}}, `names container "ghost", which the template does not have (it has main)`},
		{"override with unknown field", "create_pod_from_template", map[string]any{"templateRef": "good", "name": "x", "containerOverrides": []any{map[string]any{"name": "main", "imagee": "i"}}}, `unknown field "imagee"`},
		{"bad top-level override", "create_pod_from_template", map[string]any{"templateRef": "good", "name": "x", "topLevelOverrides": map[string]any{"restartPolicy": 5}}, "invalid topLevelOverrides"},
		{"no registry configured", "list_registry_images", map[string]any{}, "no registry configured: set REGISTRY_URL"},
		{"policy hook missing", "test_policy", map[string]any{}, `missing properties: ["hook"]`},
		{"policy review for a route", "test_policy", map[string]any{"hook": "route", "review": map[string]any{}}, "review: only the spawn hook takes a review"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fails(t, cs, c.tool, c.args, c.want)
		})
	}

	// Nothing was created or deleted by the failures, and the server serves.
	if _, err := admin.CoreV1().ConfigMaps(ns).Get(ctx, "plain", metav1.GetOptions{}); err != nil {
		t.Errorf("plain ConfigMap: %v", err)
	}
	if _, err := admin.CoreV1().Pods(ns).Get(ctx, "x", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a failed create left pod x behind: %v", err)
	}
	r := ok(t, cs, "list_templates", map[string]any{})
	var invalid []string
	for _, tm := range get(r.structured, "templates").([]any) {
		if get(tm, "invalid") != nil {
			invalid = append(invalid, get(tm, "name").(string))
		}
	}
	if !slices.Equal(invalid, []string{"broken"}) {
		t.Errorf("list_templates flags %v as invalid, want [broken]: %s", invalid, r.text)
	}
	ok(t, cs, "current_namespace", map[string]any{})
}

// TestNamespacedModeEscapes tries to reach another namespace through every
// tool input that names one, and checks the other namespace is untouched.
func TestNamespacedModeEscapes(t *testing.T) {
	home, other := testenv.Namespace(t), testenv.Namespace(t)
	admin := testenv.Admin(t)
	ctx := context.Background()
	pod, err := admin.CoreV1().Pods(other).Create(ctx, busybox("victim"), metav1.CreateOptions{})
	mustCreate(t, pod, err)
	cm, err := admin.CoreV1().ConfigMaps(other).Create(ctx, templateCM("tmpl", `{"containers":[{"name":"main","image":"busybox"}]}`, true), metav1.CreateOptions{})
	mustCreate(t, cm, err)

	for _, transport := range []string{"streamable", "stdio"} {
		t.Run(transport, func(t *testing.T) {
			cs := connect(t, transport, server{kube: k8s.Config{Mode: k8s.ModeNamespaced, Namespace: home}})
			want := `namespace "` + other + `" is outside this server's scope`
			escapes := []struct {
				tool string
				args map[string]any
			}{
				{"list_pods", map[string]any{"namespace": other}},
				{"get_pod", map[string]any{"name": "victim", "namespace": other}},
				{"create_pod", map[string]any{"name": "x", "namespace": other, "containers": []any{map[string]any{"name": "c", "image": "i"}}}},
				{"patch_pod", map[string]any{"name": "victim", "namespace": other, "patch": map[string]any{"metadata": map[string]any{"labels": map[string]any{"pwned": "1"}}}}},
				{"delete_pod", map[string]any{"name": "victim", "namespace": other}},
				{"get_pod_logs", map[string]any{"name": "victim", "namespace": other}},
				{"list_templates", map[string]any{"namespace": other}},
				{"get_template", map[string]any{"name": "tmpl", "namespace": other}},
				{"create_template", map[string]any{"name": "t", "namespace": other, "spec": map[string]any{"containers": []any{map[string]any{"name": "c", "image": "i"}}}}},
				{"update_template", map[string]any{"name": "tmpl", "namespace": other, "tag": "pwned"}},
				{"delete_template", map[string]any{"name": "tmpl", "namespace": other}},
				{"create_pod_from_template", map[string]any{"templateRef": "tmpl", "name": "x", "namespace": other}},
				{"create_pod_from_template", map[string]any{"templateRef": other + "/tmpl", "name": "x"}},
				{"create_pod_from_template", map[string]any{"templateRef": "pod-template://" + other + "/tmpl", "name": "x"}},
				{"spawn_workspace", map[string]any{"id": "x", "namespace": other, "spec": map[string]any{"containers": []any{map[string]any{"name": "c", "image": "i"}}}}},
				{"spawn_workspace", map[string]any{"id": "x", "templateRef": other + "/tmpl"}},
				{"list_workspaces", map[string]any{"namespace": other}},
				{"stop_workspace", map[string]any{"id": "x", "namespace": other}},
			}
			for _, e := range escapes {
				fails(t, cs, e.tool, e.args, want)
			}
			if _, err := cs.ReadResource(ctx, readParams("pod-template://"+other+"/tmpl")); err == nil {
				t.Errorf("reading another namespace's template resource succeeded")
			}
			r := ok(t, cs, "list_namespaces", map[string]any{})
			if got := toStrings(r.structured["namespaces"]); !slices.Equal(got, []string{home}) {
				t.Errorf("list_namespaces in namespaced mode = %v, want [%s]", got, home)
			}
			r = ok(t, cs, "current_namespace", map[string]any{})
			if r.structured["mode"] != "namespaced" || r.structured["namespace"] != home {
				t.Errorf("current_namespace = %v", r.structured)
			}
			// The home namespace works, by default and by name.
			ok(t, cs, "list_pods", map[string]any{})
			ok(t, cs, "list_pods", map[string]any{"namespace": home})
		})
	}
	p, err := admin.CoreV1().Pods(other).Get(ctx, "victim", metav1.GetOptions{})
	if err != nil || p.DeletionTimestamp != nil || p.Labels["pwned"] != "" {
		t.Errorf("victim pod was touched: %v %+v", err, p.ObjectMeta)
	}
	c, err := admin.CoreV1().ConfigMaps(other).Get(ctx, "tmpl", metav1.GetOptions{})
	if err != nil || c.Annotations["nogoo9/tag"] != "" {
		t.Errorf("victim template was touched: %v %+v", err, c)
	}
	pods, err := admin.CoreV1().Pods(other).List(ctx, metav1.ListOptions{})
	if err != nil || len(pods.Items) != 1 {
		t.Errorf("pods in %s: %v %v", other, err, pods)
	}
}
