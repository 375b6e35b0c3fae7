package main

import (
	"context"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nocrd/nocrd/k8s"
)

// exampleTemplate is the template demo-setup creates, so that a newcomer's
// first list_templates and create_pod_from_template have something to use.
const exampleTemplate = "example-workspace"

// demoSetup makes sure the configured namespace and the example template
// exist. Running it again changes nothing.
func demoSetup(ctx context.Context, cfg *config, out io.Writer) error {
	kube, err := k8s.New(cfg.Kube)
	if err != nil {
		return err
	}
	ns := kube.DefaultNamespace()
	// Pod Security's baseline level keeps the pods callers ask for off
	// the node: no privileged containers, host namespaces (hostNetwork
	// among them) or hostPath volumes (README, "Workspaces").
	_, err = kube.Kubernetes().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "baseline"}}}, metav1.CreateOptions{})
	switch {
	case err == nil:
		fmt.Fprintf(out, "demo-setup: created namespace %s\n", ns)
	case apierrors.IsAlreadyExists(err):
	default:
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	_, err = kube.CreateTemplate(ctx, k8s.TemplateInput{
		Name:        exampleTemplate,
		Description: "A minimal workspace: one busybox container with a scratch volume",
		Tag:         "example",
		Spec: &corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "workspace", Image: "busybox:1.36", Command: []string{"sleep", "infinity"},
				VolumeMounts: []corev1.VolumeMount{{Name: "workspace-storage", MountPath: "/workspace"}},
			}},
			Volumes: []corev1.Volume{{Name: "workspace-storage", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	})
	switch {
	case err == nil:
		fmt.Fprintf(out, "demo-setup: created template %s/%s\n", ns, exampleTemplate)
	case apierrors.IsAlreadyExists(err):
		fmt.Fprintf(out, "demo-setup: template %s/%s already exists\n", ns, exampleTemplate)
	default:
		return err
	}
	return nil
}
