package k8s

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestParseTemplateRef(t *testing.T) {
	cases := []struct {
		ref, wantNS, wantName, wantErr string
	}{
		{ref: "tmpl", wantNS: "def", wantName: "tmpl"},
		{ref: "other/tmpl", wantNS: "other", wantName: "tmpl"},
		{ref: "pod-template://other/tmpl", wantNS: "other", wantName: "tmpl"},
		{ref: "pod-template://tmpl", wantNS: "def", wantName: "tmpl"},
		{ref: "dotted.name", wantNS: "def", wantName: "dotted.name"},
		{ref: "", wantErr: "must not be empty"},
		{ref: "pod-template://", wantErr: "must not be empty"},
		{ref: "a/b/c", wantErr: "use pod-template://namespace/name"},
		{ref: "/tmpl", wantErr: "invalid namespace"},
		{ref: "ns/", wantErr: "invalid name"},
		{ref: "Upper/tmpl", wantErr: "invalid namespace"},
		{ref: "ns/UPPER", wantErr: "invalid name"},
		{ref: "ns.dotted/tmpl", wantErr: "invalid namespace"},
		{ref: "../etc", wantErr: "invalid"},
	}
	for _, c := range cases {
		ns, name, err := ParseTemplateRef(c.ref, "def")
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("ParseTemplateRef(%q) error = %v, want %q", c.ref, err, c.wantErr)
			}
			continue
		}
		if err != nil || ns != c.wantNS || name != c.wantName {
			t.Errorf("ParseTemplateRef(%q) = %q, %q, %v; want %q, %q", c.ref, ns, name, err, c.wantNS, c.wantName)
		}
	}
}

// FuzzParseTemplateRef checks that whatever a caller sends, an accepted
// reference names a valid namespace and a valid object name.
func FuzzParseTemplateRef(f *testing.F) {
	for _, s := range []string{"tmpl", "ns/tmpl", "pod-template://ns/tmpl", "a/b/c", "", "pod-template://", "%2e%2e/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		ns, name, err := ParseTemplateRef(ref, "def")
		if err != nil {
			var ie *InputError
			if !asInputError(err, &ie) || ie.Field != "templateRef" {
				t.Fatalf("error %v is not an InputError for templateRef", err)
			}
			return
		}
		if ValidateName("namespace", ns) != nil || ValidateName("name", name) != nil {
			t.Fatalf("accepted %q as %q/%q", ref, ns, name)
		}
		if strings.Contains(name, "/") || strings.Contains(ns, "/") {
			t.Fatalf("slash survived in %q/%q", ns, name)
		}
	})
}

func asInputError(err error, target **InputError) bool {
	ie, ok := err.(*InputError)
	*target = ie
	return ok
}

func TestApplyOverrides(t *testing.T) {
	base := &corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyAlways,
		Containers: []corev1.Container{
			{Name: "main", Image: "node:20", Command: []string{"sleep", "infinity"}, Env: []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "KEEP", Value: "k"}}},
			{Name: "side", Image: "busybox"},
		},
	}
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	cases := []struct {
		name      string
		overrides []json.RawMessage
		top       json.RawMessage
		check     func(*corev1.PodSpec) string
		wantErr   string
	}{
		{name: "env merged by name", overrides: []json.RawMessage{raw(`{"name":"main","env":[{"name":"A","value":"2"},{"name":"B","value":"3"}]}`)},
			check: func(s *corev1.PodSpec) string {
				got := map[string]string{}
				for _, e := range s.Containers[0].Env {
					got[e.Name] = e.Value
				}
				if got["A"] != "2" || got["B"] != "3" || got["KEEP"] != "k" || len(got) != 3 {
					return "env " + jsonOf(s.Containers[0].Env)
				}
				return ""
			}},
		{name: "image and command replaced, other container untouched", overrides: []json.RawMessage{raw(`{"name":"main","image":"node:22","command":["node"]}`)},
			check: func(s *corev1.PodSpec) string {
				if s.Containers[0].Image != "node:22" || jsonOf(s.Containers[0].Command) != `["node"]` || s.Containers[1].Image != "busybox" || len(s.Containers) != 2 {
					return jsonOf(s.Containers)
				}
				return ""
			}},
		{name: "resources set", overrides: []json.RawMessage{raw(`{"name":"side","resources":{"limits":{"cpu":"500m","memory":"1Gi"}}}`)},
			check: func(s *corev1.PodSpec) string {
				if s.Containers[1].Resources.Limits.Cpu().String() != "500m" || s.Containers[1].Resources.Limits.Memory().String() != "1Gi" {
					return jsonOf(s.Containers[1].Resources)
				}
				return ""
			}},
		{name: "top level", top: raw(`{"restartPolicy":"Never","nodeSelector":{"disk":"ssd"}}`),
			check: func(s *corev1.PodSpec) string {
				if s.RestartPolicy != corev1.RestartPolicyNever || s.NodeSelector["disk"] != "ssd" || len(s.Containers) != 2 {
					return jsonOf(s)
				}
				return ""
			}},
		{name: "null top level ignored", top: raw(`null`), check: func(s *corev1.PodSpec) string { return "" }},
		{name: "unknown container", overrides: []json.RawMessage{raw(`{"name":"ghost","image":"x"}`)}, wantErr: `names container "ghost", which the template does not have (it has main, side)`},
		{name: "override without name", overrides: []json.RawMessage{raw(`{"image":"x"}`)}, wantErr: `names container ""`},
		{name: "unknown container field", overrides: []json.RawMessage{raw(`{"name":"main","imag":"x"}`)}, wantErr: `unknown field "imag"`},
		{name: "not an object", overrides: []json.RawMessage{raw(`[1]`)}, wantErr: "is not a partial Container"},
		{name: "unknown top-level field", top: raw(`{"restartpolicy":"Never"}`), wantErr: `unknown field "restartpolicy"`},
		{name: "result re-validated", top: raw(`{"restartPolicy":"Sometimes"}`), wantErr: "restartPolicy must be Always, OnFailure or Never"},
		{name: "image removed is invalid", overrides: []json.RawMessage{raw(`{"name":"main","image":""}`)}, wantErr: `container "main" has no image`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := jsonOf(base)
			got, err := ApplyOverrides(base, c.overrides, c.top)
			if jsonOf(base) != before {
				t.Fatalf("ApplyOverrides changed its input")
			}
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := c.check(got); msg != "" {
				t.Errorf("unexpected result: %s", msg)
			}
		})
	}
}

func TestDecodePodSpec(t *testing.T) {
	cases := []struct{ in, wantErr string }{
		{`{"containers":[{"name":"a","image":"b"}]}`, ""},
		{`{"containers":[{"name":"a","image":"b"}],"initContainers":[{"name":"i","image":"b"}]}`, ""},
		{``, "a PodSpec is required"},
		{`null`, "a PodSpec is required"},
		{`[]`, "not a valid PodSpec"},
		{`{"containers":[]}`, "at least one container"},
		{`{"containers":[{"image":"b"}]}`, "container 0 has no name"},
		{`{"containers":[{"name":"Bad_Name","image":"b"}]}`, `container name "Bad_Name"`},
		{`{"containers":[{"name":"a","image":"b"}],"initContainers":[{"name":"a","image":"b"}]}`, `container name "a" is used twice`},
		{`{"containers":[{"name":"a"}]}`, `container "a" has no image`},
		{`{"containers":[{"name":"a","image":"b"}],"bogus":1}`, `unknown field "bogus"`},
		{`{"containers":[{"name":"a","image":"b"}],"restartPolicy":"never"}`, "restartPolicy must be"},
	}
	for _, c := range cases {
		_, err := DecodePodSpec("spec", []byte(c.in))
		if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("DecodePodSpec(%s) error = %v, want %q", c.in, err, c.wantErr)
		}
	}
}

func TestNamespaceScope(t *testing.T) {
	cases := []struct {
		mode      Mode
		requested string
		want      string
		wantErr   string
	}{
		{ModeCluster, "", "home", ""},
		{ModeCluster, "other", "other", ""},
		{ModeCluster, "Bad NS", "", "invalid namespace"},
		{ModeNamespaced, "", "home", ""},
		{ModeNamespaced, "home", "home", ""},
		{ModeNamespaced, "other", "", `namespace "other" is outside this server's scope: namespaced mode allows only "home"`},
		{ModeNamespaced, "Bad NS", "", "outside this server's scope"},
	}
	for _, c := range cases {
		cl := &Client{cfg: Config{Mode: c.mode, Namespace: "home"}}
		got, err := cl.Namespace(c.requested)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s Namespace(%q) error = %v, want %q", c.mode, c.requested, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s Namespace(%q) = %q, %v; want %q", c.mode, c.requested, got, err, c.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		cfg     Config
		wantErr string
	}{
		{Config{Mode: ModeCluster, Namespace: "nogoo9"}, ""},
		{Config{Mode: "everything", Namespace: "nogoo9"}, "--mode/MODE"},
		{Config{Mode: ModeNamespaced, Namespace: ""}, "--namespace/NAMESPACE"},
		{Config{Mode: ModeNamespaced, Namespace: "No_Good"}, "--namespace/NAMESPACE"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("Validate(%+v) = %v, want %q", c.cfg, err, c.wantErr)
		}
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
