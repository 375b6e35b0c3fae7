package k8s

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	sigsjson "sigs.k8s.io/json"
)

// InputError reports a caller's input that is invalid before any request is
// sent to the API server.
type InputError struct {
	Field  string
	Reason string
}

func (e *InputError) Error() string { return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason) }

func inputErr(field, format string, args ...any) error {
	return &InputError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ValidateName checks an object name. Namespaces must be DNS-1123 labels;
// other names DNS-1123 subdomains, as the API server requires.
func ValidateName(field, name string) error {
	if name == "" {
		return inputErr(field, "must not be empty")
	}
	var errs []string
	if field == "namespace" {
		errs = validation.IsDNS1123Label(name)
	} else {
		errs = validation.IsDNS1123Subdomain(name)
	}
	if len(errs) > 0 {
		return inputErr(field, "%q is not a valid name: %s", name, strings.Join(errs, "; "))
	}
	return nil
}

// DecodePodSpec decodes JSON into a PodSpec, rejecting unknown fields and
// specs that cannot run (no containers, a container without name or image).
func DecodePodSpec(field string, data []byte) (*corev1.PodSpec, error) {
	if len(bytes.TrimSpace(data)) == 0 || string(bytes.TrimSpace(data)) == "null" {
		return nil, inputErr(field, "a PodSpec is required")
	}
	var spec corev1.PodSpec
	if err := DecodeStrict(data, &spec); err != nil {
		return nil, inputErr(field, "not a valid PodSpec: %v", err)
	}
	if err := CheckPodSpec(field, &spec); err != nil {
		return nil, err
	}
	return &spec, nil
}

// CheckPodSpec checks the parts of a PodSpec that nocrd relies on; the API
// server validates the rest when the pod is created.
func CheckPodSpec(field string, spec *corev1.PodSpec) error {
	if len(spec.Containers) == 0 {
		return inputErr(field, "spec.containers must list at least one container")
	}
	seen := map[string]bool{}
	for i, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		if c.Name == "" {
			return inputErr(field, "container %d has no name", i)
		}
		if errs := validation.IsDNS1123Label(c.Name); len(errs) > 0 {
			return inputErr(field, "container name %q: %s", c.Name, strings.Join(errs, "; "))
		}
		if seen[c.Name] {
			return inputErr(field, "container name %q is used twice", c.Name)
		}
		seen[c.Name] = true
		if c.Image == "" {
			return inputErr(field, "container %q has no image", c.Name)
		}
	}
	switch spec.RestartPolicy {
	case "", corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
	default:
		return inputErr(field, "restartPolicy must be Always, OnFailure or Never, got %q", spec.RestartPolicy)
	}
	return nil
}

// DecodeStrict decodes JSON as the API server does: field names match case
// sensitively, and unknown or duplicated fields are errors.
func DecodeStrict(data []byte, v any) error {
	strict, err := sigsjson.UnmarshalStrict(data, v)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}
