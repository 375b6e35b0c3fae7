package k8s

import (
	"errors"
	"testing"
)

// FuzzDecodeManifest: any input either decodes into 1 to
// maxApplyDocuments objects that each have an apiVersion, a kind and a
// name, or is refused with an InputError naming the manifest; nothing
// panics.
func FuzzDecodeManifest(f *testing.F) {
	for _, seed := range []string{
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
		"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: b}\n",
		`{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}`,
		"apiVersion: v1\nkind: ConfigMapList\nitems: []\n",
		"kind: [",
		"- a\n- b\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: g-}\n",
		"",
		"---",
		"apiVersion: 1\nkind: 2\nmetadata: {name: 3}\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, manifest string) {
		objs, err := decodeManifest(manifest)
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) || ie.Field != "manifest" || objs != nil {
				t.Fatalf("%q: %v (%T), %d objects", manifest, err, err, len(objs))
			}
			return
		}
		if len(objs) == 0 || len(objs) > maxApplyDocuments {
			t.Fatalf("%q: %d objects", manifest, len(objs))
		}
		for _, o := range objs {
			if o.GetAPIVersion() == "" || o.GetKind() == "" || o.GetName() == "" {
				t.Fatalf("%q: object without apiVersion, kind or name: %v", manifest, o.Object)
			}
		}
	})
}

// TestNearName: what a "not found" suggests for a type name.
func TestNearName(t *testing.T) {
	for _, tc := range []struct {
		want, name string
		near       bool
	}{
		{"deploymnets", "deployments", true}, // two letters swapped: 2 edits
		{"deploymen", "deployment", true},
		{"deployment", "deployments", true},
		{"configmap", "configmaps", true},
		{"cm", "cm", true},
		{"cn", "cm", true},
		{"xy", "cm", false},
		{"pod", "pods", true},
		{"po", "pods", false}, // too short to take as a part
		{"ingress", "ingresses", true},
		{"service", "services", true},
		{"sevrice", "service", true},
		{"widget", "gadgets", false},
		{"nodez", "nodes", true},
		{"events", "endpoints", false},
		{"x", "x", false},
		{"abc", "", false},
	} {
		if got := nearName(tc.want, tc.name); got != tc.near {
			t.Errorf("nearName(%q, %q) = %v, want %v", tc.want, tc.name, got, tc.near)
		}
	}
	for _, tc := range []struct {
		a, b  string
		limit int
		d     int
	}{
		{"kitten", "sitting", 3, 3},
		{"kitten", "sitting", 2, 3}, // over the limit: limit+1
		{"", "abc", 5, 3},
		{"abc", "abc", 0, 0},
		{"abcdef", "ab", 2, 3},
	} {
		if got := editDistance(tc.a, tc.b, tc.limit); got != tc.d {
			t.Errorf("editDistance(%q, %q, %d) = %d, want %d", tc.a, tc.b, tc.limit, got, tc.d)
		}
	}
}
