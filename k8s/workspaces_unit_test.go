package k8s

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestWorkspacePodName(t *testing.T) {
	cases := []struct{ owner, id, want string }{
		{"", "session45", "ws-anonymous-session45"},
		{"anonymous", "agent-session-42", "ws-anonymous-agent-session-42"},
		{"alice", "s1", "ws-alice-s1"},
	}
	for _, c := range cases {
		if got := WorkspacePodName(c.owner, c.id); got != c.want {
			t.Errorf("WorkspacePodName(%q, %q) = %q, want %q", c.owner, c.id, got, c.want)
		}
	}
	// Names that cannot be used as they are, and pairs that would collide
	// if simply joined, get distinct valid names.
	pairs := [][2]string{
		{"a-b", "c"}, {"a", "b-c"}, {"Alice@Example.com", "s1"}, {"alice@example.com", "s1"},
		{"auth0|123", "S_1.x"}, {strings.Repeat("o", 100), strings.Repeat("i", 63)}, {"", "Ab"}, {"ab", ""},
		{"anonymous", "x-y"}, {"anonymous-x", "y"},
	}
	seen := map[string][2]string{}
	for _, p := range pairs {
		n := WorkspacePodName(p[0], p[1])
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			t.Errorf("WorkspacePodName(%q, %q) = %q: %v", p[0], p[1], n, errs)
		}
		if prev, dup := seen[n]; dup {
			t.Errorf("%v and %v share the pod name %q", prev, p, n)
		}
		seen[n] = p
	}
}

func TestOwnerLabel(t *testing.T) {
	if OwnerLabel("") != "anonymous" || OwnerLabel("alice") != "alice" {
		t.Errorf("plain owners changed: %q %q", OwnerLabel(""), OwnerLabel("alice"))
	}
	a, b := OwnerLabel("alice@example.com"), OwnerLabel("bob@example.com")
	if a == b || !strings.HasPrefix(a, "sha256-") || len(validation.IsValidLabelValue(a)) > 0 {
		t.Errorf("hashed owner labels: %q %q", a, b)
	}
}

func TestBuildWorkspacePod(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	spec := &corev1.PodSpec{Containers: []corev1.Container{{
		Name: "workspace", Image: "node:20", Env: []corev1.EnvVar{{Name: "KEEP", Value: "1"}, {Name: "PROJECT", Value: "old"}},
		VolumeMounts: []corev1.VolumeMount{{Name: "ws", MountPath: "/workspace"}},
	}}}
	full := map[string]string{
		AnnotationRequiredContext:    "PROJECT, REPO",
		AnnotationInitImage:          "alpine/git",
		AnnotationInitCommand:        "git clone $REPO /workspace/$PROJECT",
		AnnotationPreStopCommand:     "sync /workspace",
		AnnotationDefaultGracePeriod: "120",
		AnnotationWorkspacePort:      "8080",
		AnnotationTTL:                "2h",
		AnnotationIAMRoleARN:         "arn:aws:iam::1:role/x",
	}
	req := SpawnRequest{ID: "s1", Owner: "alice", Context: map[string]string{"PROJECT": "p", "REPO": "https://git/x"}}
	pod, err := BuildWorkspacePod(req, spec, full, "ns/tmpl", "ws-alice-s1", now)
	if err != nil {
		t.Fatal(err)
	}
	c := pod.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	checks := map[string]bool{
		"name":              pod.Name == "ws-alice-s1",
		"labels":            pod.Labels[LabelType] == "workspace" && pod.Labels[LabelWorkspaceID] == "s1" && pod.Labels[LabelUserSub] == "alice" && pod.Labels[LabelTemplate] == "tmpl",
		"owner annotation":  pod.Annotations[AnnotationOwner] == "alice" && pod.Annotations[AnnotationTemplate] == "ns/tmpl",
		"context env":       env["PROJECT"] == "p" && env["REPO"] == "https://git/x" && env["KEEP"] == "1" && len(c.Env) == 3,
		"init container":    len(pod.Spec.InitContainers) == 1 && pod.Spec.InitContainers[0].Name == InitContainerName && pod.Spec.InitContainers[0].Image == "alpine/git",
		"init command":      strings.Join(pod.Spec.InitContainers[0].Command, " ") == "/bin/sh -c git clone $REPO /workspace/$PROJECT",
		"init mounts":       len(pod.Spec.InitContainers[0].VolumeMounts) == 1 && pod.Spec.InitContainers[0].VolumeMounts[0].MountPath == "/workspace",
		"init env":          len(pod.Spec.InitContainers[0].Env) == 2,
		"preStop on main":   c.Lifecycle != nil && strings.Join(c.Lifecycle.PreStop.Exec.Command, " ") == "/bin/sh -c sync /workspace",
		"grace period":      *pod.Spec.TerminationGracePeriodSeconds == 120,
		"service account":   pod.Spec.ServiceAccountName == "ws-alice-s1",
		"workspace port":    pod.Annotations[AnnotationWorkspacePort] == "8080",
		"expiry":            pod.Annotations[AnnotationExpiresAt] == "2026-11-23T14:00:00Z",
		"input not changed": len(spec.Containers[0].Env) == 2 && spec.Containers[0].Lifecycle == nil,
	}
	for what, ok := range checks {
		if !ok {
			t.Errorf("%s: %+v", what, pod)
		}
	}

	// A pre-stop sidecar takes the hook; the default grace period is 60.
	pod, err = BuildWorkspacePod(SpawnRequest{ID: "s2"}, spec, map[string]string{AnnotationPreStopCommand: "x", AnnotationPreStopSidecar: "amazon/aws-cli"}, "", "", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(pod.Spec.Containers) != 2 || pod.Spec.Containers[1].Name != PreStopSidecarName || pod.Spec.Containers[1].Image != "amazon/aws-cli" ||
		pod.Spec.Containers[1].Lifecycle == nil || pod.Spec.Containers[0].Lifecycle != nil || *pod.Spec.TerminationGracePeriodSeconds != 60 ||
		pod.Name != "ws-anonymous-s2" || pod.Labels[LabelUserSub] != "anonymous" {
		t.Errorf("sidecar pod: %+v", pod.Spec)
	}

	bad := []struct {
		ann     map[string]string
		ctx     map[string]string
		wantErr string
	}{
		{map[string]string{AnnotationRequiredContext: "A,B, C"}, map[string]string{"B": "x"}, "missing required context keys A, C"},
		{map[string]string{AnnotationInitImage: "x"}, nil, "nogoo9/init-image needs nogoo9/init-command"},
		{map[string]string{AnnotationInitCommand: "x"}, nil, "nogoo9/init-command needs nogoo9/init-image"},
		{map[string]string{AnnotationPreStopSidecar: "x"}, nil, "nogoo9/pre-stop-sidecar-image needs nogoo9/pre-stop-command"},
		{map[string]string{AnnotationDefaultGracePeriod: "soon"}, nil, "nogoo9/default-grace-period must be a whole number"},
		{map[string]string{AnnotationDefaultGracePeriod: "-1"}, nil, "nogoo9/default-grace-period"},
		{map[string]string{AnnotationWorkspacePort: "99999"}, nil, "nogoo9/workspace-port must be a port"},
		{map[string]string{AnnotationTTL: "forever"}, nil, "nogoo9/ttl must be a positive duration"},
	}
	if _, err := BuildWorkspacePod(SpawnRequest{ID: "x"}, &corev1.PodSpec{}, map[string]string{AnnotationPreStopCommand: "x"}, "", "", now); err == nil ||
		!strings.Contains(err.Error(), "at least one container") {
		t.Errorf("a spec without containers: %v", err)
	}
	if _, err := BuildWorkspacePod(SpawnRequest{ID: "x", PodAnnotations: map[string]string{AnnotationOwner: "mallory"}}, spec, nil, "", "", now); err == nil ||
		!strings.Contains(err.Error(), "keys under nogoo9/ are set by nocrd") {
		t.Errorf("a forged owner annotation was accepted: %v", err)
	}
	pod, err = BuildWorkspacePod(SpawnRequest{ID: "x", PodAnnotations: map[string]string{"prometheus.io/scrape": "true"}}, spec, nil, "", "", now)
	if err != nil || pod.Annotations["prometheus.io/scrape"] != "true" || pod.Annotations[AnnotationOwner] != "anonymous" {
		t.Errorf("pod annotations: %v %v", err, pod)
	}
	for _, b := range bad {
		if _, err := BuildWorkspacePod(SpawnRequest{ID: "x", Context: b.ctx}, spec, b.ann, "", "", now); err == nil || !strings.Contains(err.Error(), b.wantErr) {
			t.Errorf("annotations %v: error %v, want %q", b.ann, err, b.wantErr)
		}
	}
}

func TestValidateID(t *testing.T) {
	for _, ok := range []string{"s1", "agent-session-42", "A_b.c", strings.Repeat("x", 63)} {
		if err := validateID(ok); err != nil {
			t.Errorf("validateID(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-x", "x y", "a/b", strings.Repeat("x", 64), "../etc"} {
		if err := validateID(bad); err == nil {
			t.Errorf("validateID(%q) accepted", bad)
		}
	}
}

func TestStageOf(t *testing.T) {
	cond := func(typ corev1.PodConditionType, status corev1.ConditionStatus, reason string) corev1.PodCondition {
		return corev1.PodCondition{Type: typ, Status: status, Reason: reason, Message: "msg"}
	}
	waiting := func(name, reason string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "detail"}}}
	}
	scheduled := cond(corev1.PodScheduled, corev1.ConditionTrue, "")
	now := metav1.Now()
	cases := []struct {
		name      string
		pod       corev1.Pod
		wantStage string
		wantStuck string
	}{
		{"new", corev1.Pod{}, StageCreated, ""},
		{"scheduled", corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{scheduled}}}, StageScheduled, ""},
		{"unschedulable", corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{cond(corev1.PodScheduled, corev1.ConditionFalse, corev1.PodReasonUnschedulable)}}}, StageCreated, "unschedulable: msg"},
		{"init running", corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{scheduled},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "spawner-init", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}}, StageInitRunning, ""},
		{"image pull", corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{scheduled}, ContainerStatuses: []corev1.ContainerStatus{waiting("w", "ErrImagePull")}}}, StageScheduled, "container w: ErrImagePull: detail"},
		{"init crash loop", corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{scheduled}, InitContainerStatuses: []corev1.ContainerStatus{waiting("spawner-init", "CrashLoopBackOff")}}}, StageScheduled, "container spawner-init: CrashLoopBackOff"},
		{"still creating", corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{scheduled}, ContainerStatuses: []corev1.ContainerStatus{waiting("w", "ContainerCreating")}}}, StageScheduled, ""},
		{"failed", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "low memory"}}, StageCreated, "pod failed: Evicted low memory"},
		{"deleting", corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}}, StageCreated, "pod is being deleted"},
		{"ready without ip", corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{scheduled, cond(corev1.PodReady, corev1.ConditionTrue, "")}}}, StageScheduled, ""},
		{"ready", corev1.Pod{Status: corev1.PodStatus{PodIP: "127.1.0.5", Conditions: []corev1.PodCondition{scheduled, cond(corev1.PodReady, corev1.ConditionTrue, "")}}}, StageReady, ""},
	}
	for _, c := range cases {
		stage, stuck := stageOf(&c.pod)
		if stage != c.wantStage || !strings.HasPrefix(stuck, c.wantStuck) || (c.wantStuck == "") != (stuck == "") {
			t.Errorf("%s: stageOf = %q, %q; want %q, %q", c.name, stage, stuck, c.wantStage, c.wantStuck)
		}
	}
}
