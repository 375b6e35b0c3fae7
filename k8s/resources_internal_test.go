package k8s

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestDecodeList: a list as the API server answers it, as a table or as a
// plain list (what an aggregated API server that renders no table sends),
// decodes to the same objects; only the table has columns.
func TestDecodeList(t *testing.T) {
	kube, ns := NewNamespaced(t)
	ctx := context.Background()
	for _, name := range []string{"a", "b"} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}}, Data: map[string]string{"k": "v"}}
		if _, err := kube.kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rt, err := kube.resources()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		accept  string
		columns []string
	}{
		{tableAccept, []string{"Data", "Age"}},
		{"application/json", nil},
	} {
		body, err := rt.raw.Get().AbsPath("/api/v1/namespaces", ns, "configmaps").Param("labelSelector", "app").SetHeader("Accept", tc.accept).Do(ctx).Raw()
		if err != nil {
			t.Fatal(err)
		}
		var l ResourceList
		if err := decodeList(body, &l); err != nil {
			t.Fatalf("%s: %v", tc.accept, err)
		}
		var names []string
		for _, it := range l.Items {
			names = append(names, it.Name)
			if it.Namespace != ns || it.Labels["app"] != it.Name || it.Created.IsZero() || len(it.Cells) != len(tc.columns) {
				t.Errorf("%s: item %+v", tc.accept, it)
			}
		}
		if !slices.Equal(names, []string{"a", "b"}) || !slices.Equal(l.Columns, tc.columns) || l.More {
			t.Errorf("%s: %v, columns %v", tc.accept, names, l.Columns)
		}
	}
	for _, garbage := range []string{"", "{", `{"kind":"Table","rows":[{"cells":[],"object":"x"}]}`, `{"kind":"ConfigMapList","items":5}`} {
		if err := decodeList([]byte(garbage), &ResourceList{}); err == nil {
			t.Errorf("%q decoded", garbage)
		}
	}
}
