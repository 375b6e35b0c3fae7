package k8s_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
)

// TestResourceTypes: types resolve as kubectl resolves them; Secrets,
// ServiceAccounts and RBAC are not found, whatever the spelling; in
// namespaced mode cluster-scoped types are out of scope.
func TestResourceTypes(t *testing.T) {
	ctx := context.Background()
	cluster, _ := clusterMode(t)
	namespaced, _ := k8s.NewNamespaced(t)
	for _, tc := range []struct {
		typ, resource, kind string
		namespacedErr       string // "" when namespaced mode lists it too
	}{
		{"configmaps", "configmaps", "ConfigMap", ""},
		{"cm", "configmaps", "ConfigMap", ""},
		{"configmap", "configmaps", "ConfigMap", ""},
		{"ConfigMap", "configmaps", "ConfigMap", ""},
		{"deployments.apps", "deployments.apps", "Deployment", ""},
		{"deploy", "deployments.apps", "Deployment", ""},
		{"Deployment.apps", "deployments.apps", "Deployment", ""},
		{"deployments.v1.apps", "deployments.apps", "Deployment", ""},
		{"nodes", "nodes", "Node", "cluster-scoped"},
		{"namespaces", "namespaces", "Namespace", "cluster-scoped"},
	} {
		l, err := cluster.ListResources(ctx, k8s.ResourceQuery{Type: tc.typ})
		if err != nil || l.Resource != tc.resource || l.Kind != tc.kind {
			t.Errorf("cluster mode, %q: %+v %v", tc.typ, l, err)
		}
		_, err = namespaced.ListResources(ctx, k8s.ResourceQuery{Type: tc.typ})
		var te *k8s.ResourceTypeError
		if tc.namespacedErr == "" && err != nil || tc.namespacedErr != "" && (!errors.As(err, &te) || !strings.Contains(err.Error(), tc.namespacedErr)) {
			t.Errorf("namespaced mode, %q: %v, want error %q", tc.typ, err, tc.namespacedErr)
		}
	}
	for _, typ := range []string{"secrets", "secret", "Secret", "serviceaccounts", "sa", "roles", "rolebindings.rbac.authorization.k8s.io",
		"clusterroles", "ClusterRoleBinding", "nosuchthings", "pods/log", ""} {
		for _, c := range []*k8s.Client{cluster, namespaced} {
			_, lerr := c.ListResources(ctx, k8s.ResourceQuery{Type: typ})
			_, gerr := c.GetResource(ctx, typ, "", "x")
			var te *k8s.ResourceTypeError
			var ie *k8s.InputError
			for _, err := range []error{lerr, gerr} {
				if !errors.As(err, &te) && !errors.As(err, &ie) {
					t.Errorf("%s mode, %q: %v, want a resource type or input error", c.Mode(), typ, err)
				} else if te != nil && !strings.Contains(err.Error(), "not found on this API server") && !strings.Contains(err.Error(), "cluster-scoped") {
					t.Errorf("%s mode, %q: %v", c.Mode(), typ, err)
				}
			}
		}
	}
}

// TestResourceTypeSuggestions: a type that is not found is answered with
// the types near it, never a restricted one (which is answered exactly as
// an unknown type is), and in namespaced mode only namespaced ones.
func TestResourceTypeSuggestions(t *testing.T) {
	ctx := context.Background()
	cluster, _ := clusterMode(t)
	namespaced, _ := k8s.NewNamespaced(t)
	for _, tc := range []struct {
		c         *k8s.Client
		typ       string
		want, not []string
	}{
		{cluster, "deploymnets", []string{"; did you mean ", "deployments.apps"}, nil},
		{cluster, "configmap.apps", []string{"configmaps"}, nil},
		{cluster, "nodez", []string{"nodes"}, nil},
		{namespaced, "nodez", nil, []string{"nodes", "did you mean"}},
		{cluster, "secrt", nil, []string{"secrets"}},
		{cluster, "serviceaccount", []string{"services"}, []string{"serviceaccounts"}},
		{cluster, "rolebinding", nil, []string{"rbac"}},
		{cluster, "zzzzzzzz", nil, []string{"did you mean"}},
	} {
		_, err := tc.c.ListResources(ctx, k8s.ResourceQuery{Type: tc.typ})
		var te *k8s.ResourceTypeError
		if !errors.As(err, &te) {
			t.Errorf("%s mode, %q: %v, want a resource type error", tc.c.Mode(), tc.typ, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s mode, %q: %v, want %q in it", tc.c.Mode(), tc.typ, err, w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(err.Error(), n) {
				t.Errorf("%s mode, %q: %v, want no %q in it", tc.c.Mode(), tc.typ, err, n)
			}
		}
	}
	// A restricted type and an unknown one of the same shape read alike.
	_, secret := cluster.ListResources(ctx, k8s.ResourceQuery{Type: "secrets"})
	_, unknown := cluster.ListResources(ctx, k8s.ResourceQuery{Type: "secretz"})
	if strings.Replace(secret.Error(), `"secrets"`, `"secretz"`, 1) != unknown.Error() {
		t.Errorf("a restricted type reads unlike an unknown one:\n%v\n%v", secret, unknown)
	}
}

// TestResourceTypeAddedLater: a type the API server gains after the
// first use (a CRD installed then) is found, by its name, short name and
// kind, as kubectl finds it; discovery is not read once for good.
func TestResourceTypeAddedLater(t *testing.T) {
	ctx := context.Background()
	kube, ns := clusterMode(t)
	if _, err := kube.ListResources(ctx, k8s.ResourceQuery{Type: "configmaps"}); err != nil {
		t.Fatal(err) // discovery has been read
	}
	group := "r" + strings.ToLower(strings.TrimPrefix(ns, "t-")) + ".nocrd.test"
	var te *k8s.ResourceTypeError
	if _, err := kube.ListResources(ctx, k8s.ResourceQuery{Type: "widgets." + group}); !errors.As(err, &te) {
		t.Fatalf("before the CRD: %v, want a resource type error", err)
	}
	crd := `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.` + group + `}
spec:
  group: ` + group + `
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wdg]}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
    additionalPrinterColumns: [{name: Size, type: integer, jsonPath: .size}]
`
	if _, err := kube.ApplyResources(ctx, crd, false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		dyn, err := dynamic.NewForConfig(testenv.AdminConfig(t))
		if err == nil {
			err = dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}).
				Delete(context.Background(), "widgets."+group, metav1.DeleteOptions{})
		}
		if err != nil {
			t.Errorf("delete the CRD: %v", err)
		}
	})
	testenv.Eventually(t, 30*time.Second, "the new type to be found", func() (bool, error) {
		_, err := kube.ListResources(ctx, k8s.ResourceQuery{Type: "widgets." + group})
		return err == nil, err
	})
	widget := "apiVersion: " + group + "/v1\nkind: Widget\nmetadata: {name: w1}\nsize: 3\n"
	if res, err := kube.ApplyResources(ctx, widget, false); err != nil || len(res) != 1 || res[0].Namespace != ns {
		t.Fatalf("apply a widget: %+v %v", res, err)
	}
	for _, typ := range []string{"wdg", "widget", "Widget", "widgets.v1." + group} {
		l, err := kube.ListResources(ctx, k8s.ResourceQuery{Type: typ})
		if err != nil || len(l.Items) != 1 || l.Items[0].Name != "w1" || l.Kind != "Widget" {
			t.Errorf("list %q: %+v %v", typ, l, err)
		}
		// The CRD's printer column, as kubectl get shows it.
		if !slices.Equal(l.Columns, []string{"Size"}) || len(l.Items[0].Cells) != 1 || l.Items[0].Cells[0] != float64(3) {
			t.Errorf("list %q: columns %v, cells %v", typ, l.Columns, l.Items[0].Cells)
		}
	}
}

// TestListAndGetResources: objects are listed with selectors and a limit,
// got whole (without managed fields), kept to the scope's namespace.
func TestListAndGetResources(t *testing.T) {
	ctx := context.Background()
	kube, ns := k8s.NewNamespaced(t)
	other := testenv.Namespace(t)
	admin := testenv.Admin(t)
	for i, name := range []string{"a", "b", "c"} {
		cm := &metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "demo", "n": strings.Repeat("x", i+1)}}
		if _, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, configMap(*cm), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.CoreV1().ConfigMaps(other).Create(ctx, configMap(metav1.ObjectMeta{Name: "elsewhere"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	names := func(l *k8s.ResourceList) []string {
		var out []string
		for _, it := range l.Items {
			if it.Name != "kube-root-ca.crt" {
				out = append(out, it.Name)
			}
		}
		return out
	}
	l, err := kube.ListResources(ctx, k8s.ResourceQuery{Type: "cm", LabelSelector: "app=demo"})
	if err != nil || !slices.Equal(names(l), []string{"a", "b", "c"}) || !l.Namespaced || l.Namespace != ns || l.More {
		t.Errorf("label selector: %+v %v", l, err)
	}
	if !slices.Equal(l.Columns, []string{"Data", "Age"}) || l.Items[0].Cells[0] != float64(1) || l.Items[0].Labels["app"] != "demo" || l.Items[0].Created.IsZero() {
		t.Errorf("config maps' columns %v, first item %+v", l.Columns, l.Items[0])
	}
	if l, err = kube.ListResources(ctx, k8s.ResourceQuery{Type: "cm", FieldSelector: "metadata.name=b"}); err != nil || !slices.Equal(names(l), []string{"b"}) {
		t.Errorf("field selector: %+v %v", l, err)
	}
	if l, err = kube.ListResources(ctx, k8s.ResourceQuery{Type: "cm", LabelSelector: "app=demo", Limit: 2}); err != nil || len(l.Items) != 2 || !l.More {
		t.Errorf("limit 2: %+v %v", l, err)
	}
	if _, err = kube.ListResources(ctx, k8s.ResourceQuery{Type: "cm", LabelSelector: "app in (("}); err == nil {
		t.Error("a malformed selector was accepted")
	}
	var ie *k8s.InputError
	if _, err = kube.ListResources(ctx, k8s.ResourceQuery{Type: "cm", AllNamespaces: true}); !errors.As(err, &ie) || !strings.Contains(err.Error(), "namespaced mode allows only") {
		t.Errorf("all namespaces in namespaced mode: %v", err)
	}
	var se *k8s.ScopeError
	if _, err = kube.ListResources(ctx, k8s.ResourceQuery{Type: "cm", Namespace: other}); !errors.As(err, &se) {
		t.Errorf("another namespace in namespaced mode: %v", err)
	}
	if _, err = kube.GetResource(ctx, "cm", other, "elsewhere"); !errors.As(err, &se) {
		t.Errorf("get from another namespace in namespaced mode: %v", err)
	}

	o, err := kube.GetResource(ctx, "configmaps", "", "b")
	if err != nil || o.GetName() != "b" || o.GetNamespace() != ns || o.GetLabels()["n"] != "xx" || o.GetManagedFields() != nil {
		t.Errorf("get b: %v %v", o, err)
	}
	var nf *k8s.NotFoundError
	if _, err = kube.GetResource(ctx, "cm", "", "nope"); !errors.As(err, &nf) {
		t.Errorf("get a missing object: %v", err)
	}
	if _, err = kube.GetResource(ctx, "cm", "", " "); err == nil {
		t.Error("an empty name was accepted")
	}

	// A caller acting for a verified subject is refused: these act with
	// the server's identity.
	callerCtx := k8s.WithCaller(ctx, k8s.Caller{Subject: "alice"})
	var ce *k8s.CallerError
	if _, err = kube.ListResources(callerCtx, k8s.ResourceQuery{Type: "cm"}); !errors.As(err, &ce) {
		t.Errorf("list for a caller: %v", err)
	}
	if _, err = kube.GetResource(callerCtx, "cm", "", "b"); !errors.As(err, &ce) {
		t.Errorf("get for a caller: %v", err)
	}
	if _, err = kube.ApplyResources(callerCtx, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: z}\n", false); !errors.As(err, &ce) {
		t.Errorf("apply for a caller: %v", err)
	}
}

// TestEventsFor: the events about an object, and only those, oldest
// first, as kubectl describe lists them: the deployment controller's about
// a Deployment it scaled, and events reported about a ConfigMap.
func TestEventsFor(t *testing.T) {
	ctx := context.Background()
	kube, ns := k8s.NewNamespaced(t)
	admin := testenv.Admin(t)
	if _, err := kube.ApplyResources(ctx, strings.Replace(webDeployment(""), "replicas: 0", "replicas: 1", 1), false); err != nil {
		t.Fatal(err)
	}
	web, err := kube.GetResource(ctx, "deploy", "", "web")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the deployment controller's event", func() (bool, error) {
		events, err := kube.EventsFor(ctx, web)
		return err == nil && len(events) > 0 && events[0].Reason == "ScalingReplicaSet" && events[0].From == "deployment-controller" && events[0].Type == "Normal", err
	})

	cm, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, configMap(metav1.ObjectMeta{Name: "watched"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, configMap(metav1.ObjectMeta{Name: "other"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o, err := kube.GetResource(ctx, "cm", "", "watched")
	if err != nil {
		t.Fatal(err)
	}
	if events, err := kube.EventsFor(ctx, o); err != nil || len(events) != 0 {
		t.Fatalf("before any event: %+v %v", events, err)
	}
	now := time.Now()
	for i, e := range []struct {
		about        *corev1.ConfigMap
		reason, kind string
		count        int32
		ago          time.Duration
	}{
		{cm, "Second", "Warning", 3, time.Minute},
		{cm, "First", "Normal", 1, time.Hour},
		{other, "Elsewhere", "Normal", 1, time.Minute},
	} {
		ev := &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("e%d", i)},
			InvolvedObject: corev1.ObjectReference{Kind: "ConfigMap", Namespace: ns, Name: e.about.Name, UID: e.about.UID, APIVersion: "v1"},
			Reason:         e.reason, Message: "m " + e.reason, Type: e.kind, Count: e.count, Source: corev1.EventSource{Component: "tester"},
			FirstTimestamp: metav1.NewTime(now.Add(-e.ago)), LastTimestamp: metav1.NewTime(now.Add(-e.ago)),
		}
		if _, err := admin.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	events, err := kube.EventsFor(ctx, o)
	if err != nil || len(events) != 2 || events[0].Reason != "First" || events[1].Reason != "Second" ||
		events[1].Count != 3 || events[1].Type != "Warning" || events[1].From != "tester" || events[1].Message != "m Second" {
		t.Errorf("the config map's events: %+v %v", events, err)
	}
}

// TestListAllNamespaces: in cluster mode a namespaced type lists in every
// namespace, each object with its own, as kubectl -A does; a namespace
// and all namespaces together are refused.
func TestListAllNamespaces(t *testing.T) {
	ctx := context.Background()
	kube, ns := clusterMode(t)
	other := testenv.Namespace(t)
	admin := testenv.Admin(t)
	mark := map[string]string{"test": ns}
	for _, n := range []string{ns, other} {
		if _, err := admin.CoreV1().ConfigMaps(n).Create(ctx, configMap(metav1.ObjectMeta{Name: "x", Labels: mark}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	l, err := kube.ListResources(ctx, k8s.ResourceQuery{Type: "cm", AllNamespaces: true, LabelSelector: "test=" + ns})
	if err != nil || !l.Namespaced || l.Namespace != "" || len(l.Items) != 2 {
		t.Fatalf("all namespaces: %+v %v", l, err)
	}
	got := []string{l.Items[0].Namespace, l.Items[1].Namespace}
	slices.Sort(got)
	if want := []string{ns, other}; !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("namespaces %v, want %v", got, want)
	}
	if l, err = kube.ListResources(ctx, k8s.ResourceQuery{Type: "cm", LabelSelector: "test=" + ns}); err != nil || len(l.Items) != 1 || l.Namespace != ns {
		t.Errorf("the default namespace: %+v %v", l, err)
	}
	if l, err = kube.ListResources(ctx, k8s.ResourceQuery{Type: "nodes", AllNamespaces: true}); err != nil || l.Namespaced || len(l.Items) == 0 {
		t.Errorf("a cluster-scoped type with all namespaces: %+v %v", l, err)
	}
	var ie *k8s.InputError
	if _, err = kube.ListResources(ctx, k8s.ResourceQuery{Type: "cm", Namespace: ns, AllNamespaces: true}); !errors.As(err, &ie) {
		t.Errorf("a namespace and all namespaces: %v", err)
	}
}

// TestApplyResources: server-side apply creates and then configures;
// a dry run changes nothing; a manifest with one bad object changes
// nothing; what the generic apply must not touch is refused.
func TestApplyResources(t *testing.T) {
	ctx := context.Background()
	kube, ns := k8s.NewNamespaced(t)
	other := testenv.Namespace(t)
	admin := testenv.Admin(t)
	two := `apiVersion: v1
kind: ConfigMap
metadata:
  name: one
data: {k: v1}
---
---
` + webDeployment("")
	res, err := kube.ApplyResources(ctx, two, true)
	if err != nil || len(res) != 2 || res[0].Action != "created" || res[1].Action != "created" || res[0].Namespace != ns {
		t.Fatalf("dry run: %+v %v", res, err)
	}
	if _, err := admin.CoreV1().ConfigMaps(ns).Get(ctx, "one", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the dry run created one: %v", err)
	}
	if res, err = kube.ApplyResources(ctx, two, false); err != nil || len(res) != 2 || res[1].Kind != "Deployment" || res[1].Action != "created" {
		t.Fatalf("apply: %+v %v", res, err)
	}
	cm, err := admin.CoreV1().ConfigMaps(ns).Get(ctx, "one", metav1.GetOptions{})
	if err != nil || cm.Data["k"] != "v1" || cm.ManagedFields[0].Manager != k8s.FieldManager {
		t.Fatalf("after apply: %v %v", cm, err)
	}
	if _, err := admin.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	// Listed with the columns kubectl get prints for the type.
	if l, err := kube.ListResources(ctx, k8s.ResourceQuery{Type: "deploy"}); err != nil || !slices.Equal(l.Columns, []string{"Ready", "Up-to-date", "Available", "Age"}) ||
		len(l.Items) != 1 || len(l.Items[0].Cells) != 4 || l.Items[0].Cells[0] != "0/0" {
		t.Errorf("deployments' columns: %+v %v", l, err)
	}
	res, err = kube.ApplyResources(ctx, strings.Replace(two, "v1}", "v2}", 1), false)
	if err != nil || res[0].Action != "configured" {
		t.Fatalf("apply again: %+v %v", res, err)
	}
	if cm, _ = admin.CoreV1().ConfigMaps(ns).Get(ctx, "one", metav1.GetOptions{}); cm.Data["k"] != "v2" {
		t.Errorf("after the second apply: %v", cm.Data)
	}

	// One bad object among good ones: nothing at all is applied.
	for _, tc := range []struct{ name, manifest, want string }{
		{"invalid object", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: Not_Valid}\n", "fails a dry run"},
		{"other namespace", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: " + other + "}\n", "outside this server's scope"},
		{"cluster-scoped", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: sneaky}\n", "cluster-scoped"},
		{"secret", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n", "not found on this API server"},
		{"role", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r}\n", "not found on this API server"},
		{"pod", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: busybox}]}\n", "create_pod"},
		{"template", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: t, labels: {nogoo9/pod-template: \"true\"}}\n", "create_template"},
		{"unknown kind", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n", "not found on this API server"},
		{"outdated apiVersion", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh}\n---\napiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: i}\n", "not found on this API server; Ingress is served as networking.k8s.io/v1"},
		{"no name", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: g-}\n", "has no metadata.name"},
		{"no kind", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh}\n---\napiVersion: v1\nmetadata: {name: x}\n", "no apiVersion or kind"},
		{"not yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh}\n---\n{{{\n", "is not YAML or JSON"},
		{"a list", "apiVersion: v1\nkind: ConfigMapList\nitems: [{apiVersion: v1, kind: ConfigMap, metadata: {name: fresh}}]\n", "give its items as documents"},
		{"empty", " \n", "must not be empty"},
		{"only separators", "---\n---\n", "has no objects"},
	} {
		_, err := kube.ApplyResources(ctx, tc.manifest, false)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
		if _, err := admin.CoreV1().ConfigMaps(ns).Get(ctx, "fresh", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("%s: the good object was applied (%v)", tc.name, err)
		}
	}
	// Restricted kinds read as unknown ones: nothing says where they are
	// served.
	for _, m := range []string{"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n", "apiVersion: v1beta1\nkind: Secret\nmetadata: {name: s}\n",
		"apiVersion: rbac.authorization.k8s.io/v1beta1\nkind: Role\nmetadata: {name: r}\n", "apiVersion: example.com/v1\nkind: ServiceAccount\nmetadata: {name: s}\n"} {
		if _, err := kube.ApplyResources(ctx, m, true); err == nil || !strings.HasSuffix(err.Error(), "not found on this API server") {
			t.Errorf("%q: %v, want it not found and nothing more", m, err)
		}
	}
	// A template applied over without its label is still a template.
	tmpl := configMap(metav1.ObjectMeta{Name: "tmpl", Labels: map[string]string{"nogoo9/pod-template": "true"}})
	if _, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.ApplyResources(ctx, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: tmpl}\ndata: {spec: \"{}\"}\n", false); err == nil || !strings.Contains(err.Error(), "create_template") {
		t.Errorf("applying over a template: %v", err)
	}
	if cm, _ := admin.CoreV1().ConfigMaps(ns).Get(ctx, "tmpl", metav1.GetOptions{}); cm.Data["spec"] != "" {
		t.Errorf("the template was changed: %v", cm.Data)
	}
	if _, err := admin.CoreV1().Namespaces().Get(ctx, "sneaky", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespaced mode created a namespace: %v", err)
	}
}

// TestApplyIntoNewNamespace: a manifest may create a namespace and what
// goes in it, in any order, as kubectl apply takes it. What goes in it is
// checked once the namespace exists, and when it fails the check the
// namespace is removed again: nothing is applied.
func TestApplyIntoNewNamespace(t *testing.T) {
	ctx := context.Background()
	kube, base := clusterMode(t)
	admin := testenv.Admin(t)
	fresh, failed := base+"-app", base+"-bad"
	t.Cleanup(func() {
		for _, ns := range []string{fresh, failed} {
			if err := admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete namespace %s: %v", ns, err)
			}
		}
	})
	manifest := `apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: ` + fresh + `}
data: {k: v}
---
apiVersion: v1
kind: Namespace
metadata: {name: ` + fresh + `}
---
` + webDeployment(fresh)
	res, err := kube.ApplyResources(ctx, manifest, true)
	if err != nil || len(res) != 3 {
		t.Fatalf("dry run: %+v %v", res, err)
	}
	for i, want := range []bool{true, false, true} {
		if res[i].Action != "created" || res[i].Unchecked != want {
			t.Errorf("dry run, document %d: %+v, want created, unchecked %v", i+1, res[i], want)
		}
	}
	if _, err := admin.CoreV1().Namespaces().Get(ctx, fresh, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the dry run created the namespace: %v", err)
	}
	if res, err = kube.ApplyResources(ctx, manifest, false); err != nil || len(res) != 3 || res[0].Unchecked || res[0].Namespace != fresh {
		t.Fatalf("apply: %+v %v", res, err)
	}
	if cm, err := admin.CoreV1().ConfigMaps(fresh).Get(ctx, "settings", metav1.GetOptions{}); err != nil || cm.Data["k"] != "v" {
		t.Fatalf("the config map: %v %v", cm, err)
	}
	if _, err := admin.AppsV1().Deployments(fresh).Get(ctx, "web", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if res, err = kube.ApplyResources(ctx, manifest, true); err != nil || res[0].Action != "configured" || res[0].Unchecked || res[1].Action != "configured" {
		t.Errorf("dry run once it exists: %+v %v", res, err)
	}

	bad := `apiVersion: v1
kind: Namespace
metadata: {name: ` + failed + `}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: fine, namespace: ` + failed + `}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: Not_Valid, namespace: ` + failed + `}
`
	if _, err := kube.ApplyResources(ctx, bad, false); err == nil || !strings.Contains(err.Error(), "document 3") || !strings.Contains(err.Error(), "nothing was applied") {
		t.Fatalf("a bad object in a new namespace: %v", err)
	}
	if ns, err := admin.CoreV1().Namespaces().Get(ctx, failed, metav1.GetOptions{}); err == nil && ns.DeletionTimestamp == nil {
		t.Errorf("the namespace created for a manifest that failed was left: %+v", ns.Status)
	} else if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().ConfigMaps(failed).Get(ctx, "fine", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the good object of a manifest that failed was applied: %v", err)
	}
}

// webDeployment is a manifest of a Deployment "web" with no replicas, in
// namespace ns ("": the client's).
func webDeployment(ns string) string {
	meta := "{name: web}"
	if ns != "" {
		meta = "{name: web, namespace: " + ns + "}"
	}
	return `apiVersion: apps/v1
kind: Deployment
metadata: ` + meta + `
spec:
  replicas: 0
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: busybox}]}
`
}

// clusterMode returns an admin client in cluster mode whose default
// namespace is a new one of the test's.
func clusterMode(t *testing.T) (*k8s.Client, string) {
	t.Helper()
	ns := testenv.Namespace(t)
	kube, err := k8s.NewForConfig(k8s.Config{Mode: k8s.ModeCluster, Namespace: ns}, testenv.AdminConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	return kube, ns
}

func configMap(meta metav1.ObjectMeta) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"k": "v"}}
}
