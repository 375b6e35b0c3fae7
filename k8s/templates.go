package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// The labels, annotations and keys that make a ConfigMap a pod template.
// They are no-crd's, so templates written for it keep working.
const (
	LabelPodTemplate      = "nogoo9/pod-template"
	AnnotationDescription = "nogoo9/description"
	AnnotationTag         = "nogoo9/tag"
	SpecKey               = "spec"
	// LabelTemplate is set on pods made from a template to its name.
	LabelTemplate = "nogoo9/template"
	// TemplateURIScheme prefixes template references and MCP resource URIs.
	TemplateURIScheme = "pod-template://"
)

// Template is a pod template read from its ConfigMap.
type Template struct {
	Name        string
	Namespace   string
	Description string
	Tag         string
	Labels      map[string]string
	Annotations map[string]string
	// RawSpec is data.spec as stored.
	RawSpec string
	// Spec is the decoded PodSpec; nil when Invalid is set.
	Spec *corev1.PodSpec
	// Invalid says why RawSpec is not a usable PodSpec.
	Invalid string
}

func templateFrom(cm *corev1.ConfigMap) *Template {
	t := &Template{
		Name:        cm.Name,
		Namespace:   cm.Namespace,
		Description: cm.Annotations[AnnotationDescription],
		Tag:         cm.Annotations[AnnotationTag],
		Labels:      nonNil(cm.Labels),
		Annotations: nonNil(cm.Annotations),
		RawSpec:     cm.Data[SpecKey],
	}
	if _, ok := cm.Data[SpecKey]; !ok {
		t.Invalid = "data.spec is missing"
		return t
	}
	spec, err := DecodePodSpec("data.spec", []byte(t.RawSpec))
	if err != nil {
		t.Invalid = err.Error()
		return t
	}
	t.Spec = spec
	return t
}

// ParseTemplateRef splits a template reference: pod-template://ns/name,
// ns/name, or name (in defaultNamespace).
func ParseTemplateRef(ref, defaultNamespace string) (namespace, name string, err error) {
	s := strings.TrimPrefix(ref, TemplateURIScheme)
	parts := strings.Split(s, "/")
	switch {
	case s == "":
		return "", "", inputErr("templateRef", "must not be empty")
	case len(parts) == 1:
		namespace, name = defaultNamespace, parts[0]
	case len(parts) == 2:
		namespace, name = parts[0], parts[1]
		if err := ValidateName("namespace", namespace); err != nil {
			return "", "", inputErr("templateRef", "%q: %v", ref, err)
		}
	default:
		return "", "", inputErr("templateRef", "%q: use pod-template://namespace/name, namespace/name or name", ref)
	}
	if err := ValidateName("name", name); err != nil {
		return "", "", inputErr("templateRef", "%q: %v", ref, err)
	}
	return namespace, name, nil
}

// ListTemplates lists the pod templates in a namespace. Templates whose spec
// is not a valid PodSpec are listed with Invalid set.
func (c *Client) ListTemplates(ctx context.Context, namespace string) ([]*Template, error) {
	ns, err := c.Namespace(namespace)
	if err != nil {
		return nil, err
	}
	list, err := c.kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelPodTemplate + "=true"})
	if err != nil {
		return nil, fmt.Errorf("list templates in %s: %w", ns, err)
	}
	out := make([]*Template, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, templateFrom(&list.Items[i]))
	}
	return out, nil
}

// GetTemplate reads one template. A ConfigMap without the template label is
// not a template and is reported as not found.
func (c *Client) GetTemplate(ctx context.Context, namespace, name string) (*Template, error) {
	cm, err := c.templateConfigMap(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return templateFrom(cm), nil
}

func (c *Client) templateConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	ns, err := c.Namespace(namespace)
	if err != nil {
		return nil, err
	}
	if err := ValidateName("name", name); err != nil {
		return nil, err
	}
	cm, err := c.kube.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &NotFoundError{Kind: "template", Namespace: ns, Name: name}
		}
		return nil, fmt.Errorf("get template %s/%s: %w", ns, name, err)
	}
	if cm.Labels[LabelPodTemplate] != "true" {
		return nil, &NotFoundError{Kind: "template", Namespace: ns, Name: name,
			Detail: fmt.Sprintf("configmap exists but is not labelled %s=true", LabelPodTemplate)}
	}
	return cm, nil
}

// NotFoundError reports a missing object.
type NotFoundError struct {
	Kind, Namespace, Name, Detail string
}

func (e *NotFoundError) Error() string {
	msg := fmt.Sprintf("%s %s/%s not found", e.Kind, e.Namespace, e.Name)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// TemplateInput describes a template to create.
type TemplateInput struct {
	Name        string
	Namespace   string
	Description string
	Tag         string
	Spec        *corev1.PodSpec
	Labels      map[string]string
	Annotations map[string]string
}

// CreateTemplate stores a new template ConfigMap.
func (c *Client) CreateTemplate(ctx context.Context, in TemplateInput) (*Template, error) {
	ns, err := c.Namespace(in.Namespace)
	if err != nil {
		return nil, err
	}
	if err := ValidateName("name", in.Name); err != nil {
		return nil, err
	}
	if in.Spec == nil {
		return nil, inputErr("spec", "a PodSpec is required")
	}
	if err := CheckPodSpec("spec", in.Spec); err != nil {
		return nil, err
	}
	spec, err := json.Marshal(in.Spec)
	if err != nil {
		return nil, err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:        in.Name,
			Namespace:   ns,
			Labels:      maps.Clone(nonNil(in.Labels)),
			Annotations: maps.Clone(nonNil(in.Annotations)),
		},
		Data: map[string]string{SpecKey: string(spec)},
	}
	cm.Labels[LabelPodTemplate] = "true"
	setOrDelete(cm.Annotations, AnnotationDescription, &in.Description)
	setOrDelete(cm.Annotations, AnnotationTag, &in.Tag)
	created, err := c.kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create template %s/%s: %w", ns, in.Name, err)
	}
	return templateFrom(created), nil
}

func setOrDelete(m map[string]string, key string, v *string) {
	switch {
	case v == nil:
	case *v == "":
		delete(m, key)
	default:
		m[key] = *v
	}
}

// TemplateUpdate changes a template. Nil fields are left as they are; an
// empty Description or Tag removes it; Labels and Annotations are merged,
// an empty value removing the key.
type TemplateUpdate struct {
	Description *string
	Tag         *string
	Spec        *corev1.PodSpec
	Labels      map[string]string
	Annotations map[string]string
}

// UpdateTemplate changes an existing template, retrying on conflicts.
func (c *Client) UpdateTemplate(ctx context.Context, namespace, name string, up TemplateUpdate) (*Template, error) {
	if v, ok := up.Labels[LabelPodTemplate]; ok && v != "true" {
		return nil, inputErr("labels", "%s cannot be changed: it is what makes the ConfigMap a template", LabelPodTemplate)
	}
	var spec []byte
	if up.Spec != nil {
		if err := CheckPodSpec("spec", up.Spec); err != nil {
			return nil, err
		}
		var err error
		if spec, err = json.Marshal(up.Spec); err != nil {
			return nil, err
		}
	}
	for attempt := 0; ; attempt++ {
		cm, err := c.templateConfigMap(ctx, namespace, name)
		if err != nil {
			return nil, err
		}
		if cm.Labels == nil {
			cm.Labels = map[string]string{}
		}
		if cm.Annotations == nil {
			cm.Annotations = map[string]string{}
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		for k, v := range up.Labels {
			setOrDelete(cm.Labels, k, &v)
		}
		for k, v := range up.Annotations {
			setOrDelete(cm.Annotations, k, &v)
		}
		setOrDelete(cm.Annotations, AnnotationDescription, up.Description)
		setOrDelete(cm.Annotations, AnnotationTag, up.Tag)
		if spec != nil {
			cm.Data[SpecKey] = string(spec)
		}
		updated, err := c.kube.CoreV1().ConfigMaps(cm.Namespace).Update(ctx, cm, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) && attempt < 5 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("update template %s/%s: %w", cm.Namespace, name, err)
		}
		return templateFrom(updated), nil
	}
}

// DeleteTemplate deletes a template ConfigMap. ConfigMaps that are not
// templates are never deleted.
func (c *Client) DeleteTemplate(ctx context.Context, namespace, name string) (string, error) {
	cm, err := c.templateConfigMap(ctx, namespace, name)
	if err != nil {
		return "", err
	}
	err = c.kube.CoreV1().ConfigMaps(cm.Namespace).Delete(ctx, name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &cm.UID},
	})
	if err != nil {
		return "", fmt.Errorf("delete template %s/%s: %w", cm.Namespace, name, err)
	}
	return cm.Namespace, nil
}

// FromTemplate describes a pod to create from a template.
type FromTemplate struct {
	TemplateRef string
	Name        string
	Namespace   string
	// ContainerOverrides are partial Containers, each naming a container of
	// the template; they are merged into it (env and ports by name).
	ContainerOverrides []json.RawMessage
	// TopLevelOverrides is a partial PodSpec merged into the template's.
	TopLevelOverrides json.RawMessage
	// Owner and Claims describe the caller to admission policies.
	Owner  string
	Claims map[string]any
}

// CreatePodFromTemplate creates a pod from a template with overrides.
func (c *Client) CreatePodFromTemplate(ctx context.Context, in FromTemplate) (*corev1.Pod, error) {
	podNS, err := c.Namespace(in.Namespace)
	if err != nil {
		return nil, err
	}
	if err := ValidateName("name", in.Name); err != nil {
		return nil, err
	}
	tns, tname, err := ParseTemplateRef(in.TemplateRef, podNS)
	if err != nil {
		return nil, err
	}
	t, err := c.GetTemplate(ctx, tns, tname)
	if err != nil {
		return nil, err
	}
	if t.Invalid != "" {
		return nil, fmt.Errorf("template %s/%s is not usable: %s", t.Namespace, t.Name, t.Invalid)
	}
	spec, err := ApplyOverrides(t.Spec, in.ContainerOverrides, in.TopLevelOverrides)
	if err != nil {
		return nil, err
	}
	pod, err := c.newPod(podNS, metav1.ObjectMeta{Name: in.Name, Labels: map[string]string{LabelTemplate: t.Name}}, spec)
	if err != nil {
		return nil, err
	}
	if pod, err = c.admission(ctx, OperationCreatePodFromTemplate, in.Owner, in.Claims, t, pod); err != nil {
		return nil, err
	}
	return c.createPod(ctx, pod)
}

// ApplyOverrides merges container and top-level overrides into a copy of
// spec with Kubernetes' strategic merge rules.
func ApplyOverrides(spec *corev1.PodSpec, containers []json.RawMessage, topLevel json.RawMessage) (*corev1.PodSpec, error) {
	cur, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(spec.Containers))
	for _, c := range spec.Containers {
		names = append(names, c.Name)
	}
	for i, raw := range containers {
		var partial corev1.Container
		if err := DecodeStrict(raw, &partial); err != nil {
			return nil, inputErr("containerOverrides", "item %d is not a partial Container: %v", i, err)
		}
		if !slices.Contains(names, partial.Name) {
			return nil, inputErr("containerOverrides", "item %d names container %q, which the template does not have (it has %s)", i, partial.Name, strings.Join(names, ", "))
		}
		patch, err := json.Marshal(map[string]any{"containers": []json.RawMessage{raw}})
		if err != nil {
			return nil, err
		}
		if cur, err = strategicpatch.StrategicMergePatch(cur, patch, corev1.PodSpec{}); err != nil {
			return nil, inputErr("containerOverrides", "item %d: %v", i, err)
		}
	}
	if t := bytes.TrimSpace(topLevel); len(t) > 0 && string(t) != "null" {
		var partial corev1.PodSpec
		if err := DecodeStrict(t, &partial); err != nil {
			return nil, inputErr("topLevelOverrides", "not a partial PodSpec: %v", err)
		}
		if cur, err = strategicpatch.StrategicMergePatch(cur, t, corev1.PodSpec{}); err != nil {
			return nil, inputErr("topLevelOverrides", "%v", err)
		}
	}
	return DecodePodSpec("spec after overrides", cur)
}
