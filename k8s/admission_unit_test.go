package k8s

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestApplyJSONPatch(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ws-a-1", Labels: map[string]string{LabelType: TypeWorkspace}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "busybox"}}},
	}
	cases := []struct {
		name, patch, want string // want: an error fragment, or "" for success
		check             func(*corev1.Pod) bool
	}{
		{"add a label and a limit", `[{"op":"add","path":"/metadata/labels/team","value":"a"},{"op":"add","path":"/spec/containers/0/resources/limits","value":{"cpu":"1"}}]`, "",
			func(p *corev1.Pod) bool {
				return p.Labels["team"] == "a" && p.Spec.Containers[0].Resources.Limits.Cpu().String() == "1"
			}},
		{"replace the image", `[{"op":"replace","path":"/spec/containers/0/image","value":"registry.internal/x"}]`, "",
			func(p *corev1.Pod) bool { return p.Spec.Containers[0].Image == "registry.internal/x" }},
		{"not a patch", `{"op":"add"}`, "not a JSON Patch", nil},
		{"a path that is not there", `[{"op":"replace","path":"/spec/nothing/0","value":1}]`, "does not apply", nil},
		{"a field pods do not have", `[{"op":"add","path":"/spec/bogus","value":1}]`, "not a Pod", nil},
	}
	for _, c := range cases {
		got, err := ApplyJSONPatch(pod, []byte(c.patch))
		switch {
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		case c.want == "" && (err != nil || !c.check(got)):
			t.Errorf("%s: %v %+v", c.name, err, got)
		}
	}
	if pod.Labels["team"] != "" || pod.Spec.Containers[0].Image != "busybox" {
		t.Error("the original pod was changed")
	}
}
