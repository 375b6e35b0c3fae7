package k8s

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Operations an admission review describes.
const (
	OperationSpawnWorkspace        = "spawn_workspace"
	OperationCreatePodFromTemplate = "create_pod_from_template"
	OperationCreatePod             = "create_pod"
	OperationPatchPod              = "patch_pod"
)

// Admitter decides whether a pod may be created, before anything is. It
// returns the review's pod unchanged to admit it, a changed pod to admit
// it with changes, or an error (an *AdmissionError for a refusal) to deny.
type Admitter interface {
	Admit(ctx context.Context, review *AdmissionReview) (*corev1.Pod, error)
}

// AdmissionReview is what admission policies decide on: the JSON body of
// their synthetic POST /_nocrd/admission.
type AdmissionReview struct {
	Operation string `json:"operation"`
	Namespace string `json:"namespace"`
	// Owner is the verified subject the pod is made for ("anonymous"
	// without authentication); Claims are its token's claims, when known.
	Owner  string         `json:"owner"`
	Claims map[string]any `json:"claims,omitempty"`
	// Template and TemplateAnnotations describe the template used, if any.
	Template            string            `json:"template,omitempty"`
	TemplateAnnotations map[string]string `json:"templateAnnotations,omitempty"`
	// Pod is the full pod that would be created.
	Pod *corev1.Pod `json:"pod"`
	// Workspaces are the owner's live workspaces in the namespace.
	Workspaces OwnerUsage `json:"workspaces"`
}

// OwnerUsage sums an owner's live workspaces.
type OwnerUsage struct {
	Count    int                 `json:"count"`
	Requests corev1.ResourceList `json:"requests"`
	Limits   corev1.ResourceList `json:"limits"`
}

// AdmissionError is a pod an admission policy refused.
type AdmissionError struct {
	Policy string
	Reason string
}

func (e *AdmissionError) Error() string {
	return fmt.Sprintf("denied by admission policy %s: %s", e.Policy, e.Reason)
}

// SetAdmitter makes every spawn and every pod from a template go through a
// first; call it before the client is used.
func (c *Client) SetAdmitter(a Admitter) { c.admit = a }

// ApplyJSONPatch applies an RFC 6902 JSON Patch to a pod and returns the
// patched copy.
func ApplyJSONPatch(pod *corev1.Pod, patch []byte) (*corev1.Pod, error) {
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return nil, fmt.Errorf("not a JSON Patch: %w", err)
	}
	doc, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	if doc, err = p.Apply(doc); err != nil {
		return nil, fmt.Errorf("the JSON Patch does not apply: %w", err)
	}
	out := &corev1.Pod{}
	if err := DecodeStrict(doc, out); err != nil {
		return nil, fmt.Errorf("the patched pod is not a Pod: %w", err)
	}
	return out, nil
}

// admission runs the Admitter, when set, on the pod a caller is about to
// create, and returns the pod to create. A patched pod must keep its name,
// namespace and nocrd's own labels and annotations (nogoo9/...), and its
// spec must still be valid.
func (c *Client) admission(ctx context.Context, op, owner string, claims map[string]any, template *Template, pod *corev1.Pod) (*corev1.Pod, error) {
	if c.admit == nil {
		return pod, nil
	}
	review := &AdmissionReview{Operation: op, Namespace: pod.Namespace, Owner: ownerOf(owner), Claims: claims, Pod: pod.DeepCopy()}
	if template != nil {
		review.Template = template.Name
		review.TemplateAnnotations = template.Annotations
	}
	usage, err := c.ownerUsage(ctx, pod.Namespace, owner)
	if err != nil {
		return nil, fmt.Errorf("admission: list the owner's workspaces: %w", err)
	}
	review.Workspaces = usage
	admitted, err := c.admit.Admit(ctx, review)
	if err != nil {
		return nil, err
	}
	if admitted.Name != pod.Name || admitted.Namespace != pod.Namespace || admitted.GenerateName != pod.GenerateName {
		return nil, inputErr("admission patch", "a policy may not change the pod's name or namespace")
	}
	if !sameOwnKeys(&pod.ObjectMeta, &admitted.ObjectMeta) {
		return nil, inputErr("admission patch", "a policy may not change nocrd's own labels and annotations (%s...)", labelPrefix)
	}
	if err := CheckPodSpec("admission patch", &admitted.Spec); err != nil {
		return nil, err
	}
	admitted.Status = corev1.PodStatus{}
	admitted.ObjectMeta = metav1.ObjectMeta{
		Name: pod.Name, GenerateName: pod.GenerateName, Namespace: pod.Namespace,
		Labels: admitted.Labels, Annotations: admitted.Annotations, OwnerReferences: pod.OwnerReferences,
	}
	return admitted, nil
}

const labelPrefix = "nogoo9/"

// sameOwnKeys reports whether a and b carry the same nocrd labels and
// annotations (nogoo9/...).
func sameOwnKeys(a, b *metav1.ObjectMeta) bool {
	return maps.Equal(nocrdKeys(a.Labels), nocrdKeys(b.Labels)) && maps.Equal(nocrdKeys(a.Annotations), nocrdKeys(b.Annotations))
}

func nocrdKeys(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if len(k) >= len(labelPrefix) && k[:len(labelPrefix)] == labelPrefix {
			out[k] = v
		}
	}
	return out
}

// ownerUsage counts an owner's live workspaces in ns and sums their
// containers' requests and limits. The label selects them, their exact
// owner decides (see podOwner): an owner named like another's hashed
// label must not be charged for that owner's workspaces, nor fill their
// quota.
func (c *Client) ownerUsage(ctx context.Context, ns, owner string) (OwnerUsage, error) {
	owner = ownerOf(owner)
	list, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: ownerSelector(owner)})
	if err != nil {
		return OwnerUsage{}, err
	}
	u := OwnerUsage{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	add := func(into, from corev1.ResourceList) {
		for name, q := range from {
			sum := into[name]
			if sum.Format == "" {
				sum = resource.Quantity{Format: q.Format}
			}
			sum.Add(q)
			into[name] = sum
		}
	}
	for i := range list.Items {
		p := &list.Items[i]
		if podOwner(p) != owner || p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		u.Count++
		for _, ctr := range p.Spec.Containers {
			add(u.Requests, ctr.Resources.Requests)
			add(u.Limits, ctr.Resources.Limits)
		}
	}
	return u, nil
}

// Admission reports whether an Admitter is set.
func (c *Client) Admission() bool { return c.admit != nil }
