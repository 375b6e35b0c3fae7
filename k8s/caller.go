package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// Acting for a verified caller. With authentication on, the workspace
// operations take their owner from the caller's verified subject; the
// generic pod operations take the caller from the context, so that they
// cannot be used to get round workspace ownership: through them a caller
// may not read, change, delete or read the logs of another owner's
// workspace pod, nor set or change nocrd's own labels and annotations
// (nogoo9/...), which say what is a workspace and whose it is.

type callerKey struct{}

// Caller is who an operation acts for: a verified subject, and its token's
// claims (shown to admission policies).
type Caller struct {
	Subject string
	Claims  map[string]any
}

// WithCaller returns a context acting for c, a verified identity. The pod
// operations of a Client called with it keep to what c.Subject may touch
// (see above); without it they are not limited, as with authentication
// off, where every caller is the same anonymous owner.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller ctx acts for, if it acts for one.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// mayTouch checks that the caller of ctx, if any, may act on pod p: any
// pod but another owner's workspace.
func mayTouch(ctx context.Context, p *corev1.Pod) error {
	caller, ok := CallerFrom(ctx)
	if !ok || p.Labels[LabelType] != TypeWorkspace || podOwner(p) == caller.Subject {
		return nil
	}
	return &OwnershipError{ID: p.Labels[LabelWorkspaceID], Namespace: p.Namespace, Pod: p.Name}
}

// guardedPod fetches pod ns/name for an operation on it (op, as errors
// name it: "patch pod") when ctx acts for a caller, and checks the caller
// may touch it; without a caller it fetches nothing and returns nil.
func (c *Client) guardedPod(ctx context.Context, op, ns, name string) (*corev1.Pod, error) {
	if _, ok := CallerFrom(ctx); !ok {
		return nil, nil
	}
	p, err := c.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("%s %s/%s: %w", op, ns, name, err)
	}
	if err := mayTouch(ctx, p); err != nil {
		return nil, err
	}
	return p, nil
}

// checkOwnKeys refuses, when ctx acts for a caller, labels or annotations
// that set one of nocrd's own keys.
func checkOwnKeys(ctx context.Context, meta metav1.ObjectMeta) error {
	if _, ok := CallerFrom(ctx); !ok {
		return nil
	}
	for _, kv := range []struct {
		field string
		m     map[string]string
	}{{"labels", meta.Labels}, {"annotations", meta.Annotations}} {
		if keys := slices.Sorted(maps.Keys(nocrdKeys(kv.m))); len(keys) > 0 {
			return inputErr(kv.field, "%s is nocrd's own (%s...): with authentication on, workspaces are made and owned through the workspace tools", strings.Join(keys, ", "), labelPrefix)
		}
	}
	return nil
}

// checkPatch checks a strategic merge patch of the live pod p and returns
// the patch to send. Applied to p, the patch must leave nocrd's own labels
// and annotations as they are when ctx acts for a caller, and the pod it
// makes must be admitted by the admission policies, if any. When they
// admit it with changes, what is sent is what they admitted (its labels,
// annotations and spec, as a patch from p). The patch sent carries p's
// uid, so that the API server applies it to the pod checked (not to one
// made since under its name) or refuses it; p's resourceVersion would
// refuse it at every status update as well.
func (c *Client) checkPatch(ctx context.Context, p *corev1.Pod, patch []byte) ([]byte, error) {
	orig, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	patchedJSON, err := strategicpatch.StrategicMergePatch(orig, patch, corev1.Pod{})
	if err != nil {
		return nil, inputErr("patch", "%v", err)
	}
	patched := &corev1.Pod{}
	if err := json.Unmarshal(patchedJSON, patched); err != nil {
		return nil, inputErr("patch", "the patched pod is not a Pod: %v", err)
	}
	who, acting := CallerFrom(ctx)
	if acting && !sameOwnKeys(&p.ObjectMeta, &patched.ObjectMeta) {
		return nil, inputErr("patch", "nocrd's own labels and annotations (%s...) may not be changed with authentication on", labelPrefix)
	}
	if c.admit != nil {
		admitted, err := c.admission(ctx, OperationPatchPod, who.Subject, who.Claims, nil, patched)
		if err != nil {
			return nil, err
		}
		if !maps.Equal(admitted.Labels, patched.Labels) || !maps.Equal(admitted.Annotations, patched.Annotations) || !apiequality.Semantic.DeepEqual(admitted.Spec, patched.Spec) {
			if patch, err = patchBetween(p, admitted); err != nil {
				return nil, err
			}
		}
	}
	var doc map[string]any
	if err := json.Unmarshal(patch, &doc); err != nil {
		return nil, inputErr("patch", "must be a JSON object (a strategic merge patch)")
	}
	meta, _ := doc["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["uid"] = string(p.UID)
	doc["metadata"] = meta
	return json.Marshal(doc)
}

// patchBetween is the strategic merge patch that takes from's labels,
// annotations and spec to to's.
func patchBetween(from, to *corev1.Pod) ([]byte, error) {
	shape := func(p *corev1.Pod) ([]byte, error) {
		return json.Marshal(corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: p.Labels, Annotations: p.Annotations}, Spec: p.Spec})
	}
	a, err := shape(from)
	if err != nil {
		return nil, err
	}
	b, err := shape(to)
	if err != nil {
		return nil, err
	}
	return strategicpatch.CreateTwoWayMergePatch(a, b, corev1.Pod{})
}
