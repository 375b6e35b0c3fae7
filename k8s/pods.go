package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

// PodSummary is the row list_pods shows for a pod.
type PodSummary struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace"`
	Phase       string            `json:"phase"`
	Ready       int               `json:"ready"`
	Total       int               `json:"total"`
	Restarts    int               `json:"restarts"`
	PodIP       string            `json:"podIP"`
	Node        string            `json:"node"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// Summarize condenses a pod into its list row.
func Summarize(p *corev1.Pod) PodSummary {
	s := PodSummary{
		Name:        p.Name,
		Namespace:   p.Namespace,
		Phase:       string(p.Status.Phase),
		Total:       len(p.Spec.Containers),
		PodIP:       p.Status.PodIP,
		Node:        p.Spec.NodeName,
		Labels:      nonNil(p.Labels),
		Annotations: nonNil(p.Annotations),
	}
	if p.DeletionTimestamp != nil {
		s.Phase = "Terminating"
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Ready {
			s.Ready++
		}
		s.Restarts += int(cs.RestartCount)
	}
	return s
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// ListPodsOptions selects pods.
type ListPodsOptions struct {
	Namespace     string
	LabelSelector string
	FieldSelector string
	Limit         int64
}

// ListPods lists pods in one namespace.
func (c *Client) ListPods(ctx context.Context, o ListPodsOptions) ([]PodSummary, error) {
	ns, err := c.Namespace(o.Namespace)
	if err != nil {
		return nil, err
	}
	if o.LabelSelector != "" {
		if _, err := labels.Parse(o.LabelSelector); err != nil {
			return nil, inputErr("labelSelector", "%v", err)
		}
	}
	if o.FieldSelector != "" {
		if _, err := fields.ParseSelector(o.FieldSelector); err != nil {
			return nil, inputErr("fieldSelector", "%v", err)
		}
	}
	if o.Limit < 0 {
		return nil, inputErr("limit", "must not be negative, got %d", o.Limit)
	}
	list, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{
		LabelSelector: o.LabelSelector,
		FieldSelector: o.FieldSelector,
		Limit:         o.Limit,
	})
	if err != nil {
		return nil, fmt.Errorf("list pods in %s: %w", ns, err)
	}
	out := make([]PodSummary, 0, len(list.Items))
	for i := range list.Items {
		if mayTouch(ctx, &list.Items[i]) == nil { // another owner's workspace is not shown
			out = append(out, Summarize(&list.Items[i]))
		}
	}
	return out, nil
}

// GetPod returns a pod as the API server stores it.
func (c *Client) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	ns, err := c.Namespace(namespace)
	if err != nil {
		return nil, err
	}
	if err := ValidateName("name", name); err != nil {
		return nil, err
	}
	pod, err := c.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get pod %s/%s: %w", ns, name, err)
	}
	if err := mayTouch(ctx, pod); err != nil {
		return nil, err
	}
	pod.APIVersion, pod.Kind = "v1", "Pod"
	return pod, nil
}

// CreatePod creates a pod from a spec, with optional labels and annotations,
// after the admission policies (SetAdmitter) admit it, as a spawn is: a
// rule such as a registry allow-list cannot be got round by making the pod
// directly. The review's owner and claims are the caller's (WithCaller), or
// anonymous. Acting for a caller, it refuses nocrd's own keys among the
// labels and annotations.
func (c *Client) CreatePod(ctx context.Context, namespace string, meta metav1.ObjectMeta, spec *corev1.PodSpec) (*corev1.Pod, error) {
	if err := checkOwnKeys(ctx, meta); err != nil {
		return nil, err
	}
	pod, err := c.newPod(namespace, meta, spec)
	if err != nil {
		return nil, err
	}
	who, _ := CallerFrom(ctx)
	if pod, err = c.admission(ctx, OperationCreatePod, who.Subject, who.Claims, nil, pod); err != nil {
		return nil, err
	}
	return c.createPod(ctx, pod)
}

// newPod checks the namespace, name and spec of a pod to create and
// returns it.
func (c *Client) newPod(namespace string, meta metav1.ObjectMeta, spec *corev1.PodSpec) (*corev1.Pod, error) {
	ns, err := c.Namespace(namespace)
	if err != nil {
		return nil, err
	}
	if err := ValidateName("name", meta.Name); err != nil {
		return nil, err
	}
	if err := CheckPodSpec("spec", spec); err != nil {
		return nil, err
	}
	meta.Namespace = ns
	return &corev1.Pod{ObjectMeta: meta, Spec: *spec}, nil
}

// createPod creates a pod newPod made and admission admitted.
func (c *Client) createPod(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	created, err := c.kube.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return created, nil
}

// PatchPod applies a strategic merge patch to a pod and returns the patched
// pod. Acting for a caller (WithCaller), it refuses another owner's
// workspace pod and a patch that changes nocrd's own labels or annotations.
// With admission policies (SetAdmitter), the pod as patched is reviewed
// (operation patch_pod) before the patch is sent, so that a patch cannot
// bring in what a policy refuses at creation, such as an image from
// another registry; see checkPatch.
func (c *Client) PatchPod(ctx context.Context, namespace, name string, patch []byte) (*corev1.Pod, error) {
	ns, err := c.Namespace(namespace)
	if err != nil {
		return nil, err
	}
	if err := ValidateName("name", name); err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := json.Unmarshal(patch, &obj); err != nil || obj == nil {
		return nil, inputErr("patch", "must be a JSON object (a strategic merge patch)")
	}
	live, err := c.guardedPod(ctx, "patch pod", ns, name)
	if err != nil {
		return nil, err
	}
	if live == nil && c.admit != nil {
		if live, err = c.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return nil, fmt.Errorf("patch pod %s/%s: %w", ns, name, err)
		}
	}
	if live != nil {
		if patch, err = c.checkPatch(ctx, live, patch); err != nil {
			return nil, err
		}
	}
	pod, err := c.kube.CoreV1().Pods(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return nil, fmt.Errorf("patch pod %s/%s: %w", ns, name, err)
	}
	return pod, nil
}

// DeletePod deletes a pod; a nil grace period uses the pod's own. Acting
// for a caller (WithCaller), it refuses another owner's workspace pod.
func (c *Client) DeletePod(ctx context.Context, namespace, name string, gracePeriodSeconds *int64) (string, error) {
	ns, err := c.Namespace(namespace)
	if err != nil {
		return "", err
	}
	if err := ValidateName("name", name); err != nil {
		return "", err
	}
	if gracePeriodSeconds != nil && *gracePeriodSeconds < 0 {
		return "", inputErr("gracePeriodSeconds", "must not be negative, got %d", *gracePeriodSeconds)
	}
	opts := metav1.DeleteOptions{GracePeriodSeconds: gracePeriodSeconds}
	if p, err := c.guardedPod(ctx, "delete pod", ns, name); err != nil {
		return "", err
	} else if p != nil {
		opts.Preconditions = &metav1.Preconditions{UID: &p.UID}
	}
	err = c.deletePod(ctx, ns, name, opts)
	if err != nil {
		return "", fmt.Errorf("delete pod %s/%s: %w", ns, name, err)
	}
	return ns, nil
}

// LogOptions selects part of a container's log.
type LogOptions struct {
	Namespace    string
	Container    string
	TailLines    *int64
	SinceSeconds *int64
	LimitBytes   *int64
	Timestamps   bool
	Previous     bool
}

// MaxLogBytes bounds what PodLogs returns when the caller sets no limit.
const MaxLogBytes = 4 << 20

// PodLogs returns a container's log. Acting for a caller (WithCaller), it
// refuses another owner's workspace pod.
func (c *Client) PodLogs(ctx context.Context, name string, o LogOptions) (string, error) {
	ns, err := c.Namespace(o.Namespace)
	if err != nil {
		return "", err
	}
	if err := ValidateName("name", name); err != nil {
		return "", err
	}
	if o.TailLines != nil && *o.TailLines < 0 {
		return "", inputErr("tailLines", "must not be negative, got %d", *o.TailLines)
	}
	if o.SinceSeconds != nil && *o.SinceSeconds <= 0 {
		return "", inputErr("sinceSeconds", "must be positive, got %d", *o.SinceSeconds)
	}
	if o.LimitBytes != nil && *o.LimitBytes <= 0 {
		return "", inputErr("limitBytes", "must be positive, got %d", *o.LimitBytes)
	}
	if _, err := c.guardedPod(ctx, "get logs of pod", ns, name); err != nil {
		return "", err
	}
	limit := o.LimitBytes
	if limit == nil {
		l := int64(MaxLogBytes)
		limit = &l
	}
	req := c.kube.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{
		Container:    o.Container,
		TailLines:    o.TailLines,
		SinceSeconds: o.SinceSeconds,
		LimitBytes:   limit,
		Timestamps:   o.Timestamps,
		Previous:     o.Previous,
	})
	rc, err := req.Stream(ctx)
	if err != nil {
		return "", fmt.Errorf("get logs of pod %s/%s: %w", ns, name, err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(rc, *limit)); err != nil {
		return "", fmt.Errorf("read logs of pod %s/%s: %w", ns, name, err)
	}
	return buf.String(), nil
}

// ListNamespaces lists the namespaces in which this identity may list pods,
// as no-crd does. In namespaced mode it returns only the configured
// namespace and asks the API server nothing.
func (c *Client) ListNamespaces(ctx context.Context) ([]string, error) {
	if c.cfg.Mode == ModeNamespaced {
		return []string{c.cfg.Namespace}, nil
	}
	list, err := c.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	names := make([]string, 0, len(list.Items))
	for _, ns := range list.Items {
		names = append(names, ns.Name)
	}
	// One review answers for all namespaces when pods are listable
	// cluster-wide; otherwise each namespace is asked about.
	listPods := Access{Resource: "pods", Verb: "list"}
	everywhere, err := c.allowed(ctx, "", listPods)
	if err != nil || everywhere {
		return names, err
	}
	reviews := make([]review, len(names))
	for i, ns := range names {
		reviews[i] = review{ns: ns, access: listPods}
	}
	allowed, err := c.allowedEach(ctx, reviews)
	if err != nil {
		return nil, err
	}
	out := names[:0]
	for i, ns := range names {
		if allowed[i] {
			out = append(out, ns)
		}
	}
	return out, nil
}

// deletePod deletes pod ns/name and folds the API server's answer into this
// process's running route caches before returning, so that a workspace this
// process stopped is never routed again, even before the watch event comes.
// Then it tells the OnDelete hook, which passes the answer on to the
// processes whose route caches this one does not hold (proxy workers).
// (Other replicas learn it from their watch.)
func (c *Client) deletePod(ctx context.Context, ns, name string, opts metav1.DeleteOptions) error {
	obj, err := c.kube.CoreV1().RESTClient().Delete().Namespace(ns).Resource("pods").Name(name).
		Body(&opts).Do(ctx).Get()
	if err != nil {
		return err
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return nil // a Status: the watch will tell
	}
	c.ObserveDeletion(p)
	if f := c.deleted.Load(); f != nil {
		(*f)(ctx, p)
	}
	return nil
}

// ObserveDeletion folds the API server's answer to the deletion of pod p
// into this process's running route caches, as the watch event will when
// it comes: a graceful delete answers with the terminating pod, an
// immediate one with the pod as it was removed, and both carry the
// delete's resourceVersion, newer than anything cached for the pod. A
// proxy worker calls it with what the process that deleted the pod passed
// on; an answer older than what a cache holds changes nothing.
func (c *Client) ObserveDeletion(p *corev1.Pod) {
	typ := watch.Modified
	if p.DeletionTimestamp == nil {
		typ = watch.Deleted
	}
	c.cachesMu.Lock()
	caches := make([]*EndpointCache, 0, len(c.caches))
	for e := range c.caches {
		if e.ns == p.Namespace {
			caches = append(caches, e)
		}
	}
	c.cachesMu.Unlock()
	for _, e := range caches {
		e.apply(typ, p)
	}
}

// OnDelete has f told of every pod this client deletes, with the API
// server's answer, after this process's route caches have folded it in and
// before the deleting call returns; nil removes it. f may block the call
// (briefly: it should bound its own wait).
func (c *Client) OnDelete(f func(ctx context.Context, p *corev1.Pod)) {
	if f == nil {
		c.deleted.Store(nil)
		return
	}
	c.deleted.Store(&f)
}
