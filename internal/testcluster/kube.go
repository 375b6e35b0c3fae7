package testcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

type clientset struct {
	kube kubernetes.Interface
	dyn  dynamic.Interface
}

func (c *Cluster) clients() (*clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &clientset{kube: kube, dyn: dyn}, nil
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installKWOKCRDs installs KWOK's Logs and ClusterLogs CRDs, so that tests
// can tell the simulated kubelet which file holds a container's log.
func (cs *clientset) installKWOKCRDs(ctx context.Context, kwokDir string) error {
	for _, name := range []string{"kwok.x-k8s.io_logs.yaml", "kwok.x-k8s.io_clusterlogs.yaml"} {
		data, err := os.ReadFile(filepath.Join(kwokDir, "kustomize", "crd", "bases", name))
		if err != nil {
			return fmt.Errorf("read kwok crd: %w", err)
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &obj.Object); err != nil {
			return fmt.Errorf("decode %s: %w", name, err)
		}
		if _, err := cs.dyn.Resource(crdGVR).Create(ctx, obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create crd %s: %w", obj.GetName(), err)
		}
	}
	return nil
}

func (cs *clientset) createNode(ctx context.Context) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        NodeName,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
			Labels: map[string]string{
				"type":                   "kwok",
				"kubernetes.io/hostname": NodeName,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"kubernetes.io/role":     "agent",
			},
		},
		Spec: corev1.NodeSpec{PodCIDR: PodCIDR, PodCIDRs: []string{PodCIDR}},
	}
	_, err := cs.kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node: %w", err)
	}
	return nil
}

// waitReady waits until the node is Ready without the not-ready taint and the
// default namespace has its ServiceAccount: then pods can be scheduled and
// admitted.
func (cs *clientset) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var why string
	for time.Now().Before(deadline) {
		why = cs.notReady(ctx)
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("cluster not ready after %s: %s", timeout, why)
}

func (cs *clientset) notReady(ctx context.Context) string {
	node, err := cs.kube.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
	if err != nil {
		return "get node: " + err.Error()
	}
	ready := false
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if !ready {
		return "node " + NodeName + " is not Ready"
	}
	for _, t := range node.Spec.Taints {
		if strings.HasPrefix(t.Key, "node.kubernetes.io/") {
			return "node still has taint " + t.Key
		}
	}
	if _, err := cs.kube.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		return "default ServiceAccount: " + err.Error()
	}
	return ""
}

// writeKWOKConfig gathers the node and pod lifecycle stages shipped in the
// kwok module into one config file: the kwok binary has none built in.
func writeKWOKConfig(path, kwokDir string) (string, error) {
	stageDirs := []string{
		"kustomize/stage/node/fast",
		"kustomize/stage/node/heartbeat-with-lease",
		"kustomize/stage/pod/general",
	}
	var docs []string
	for _, d := range stageDirs {
		files, err := filepath.Glob(filepath.Join(kwokDir, d, "*.yaml"))
		if err != nil {
			return "", err
		}
		for _, f := range files {
			if filepath.Base(f) == "kustomization.yaml" {
				continue
			}
			data, err := os.ReadFile(f)
			if err != nil {
				return "", err
			}
			docs = append(docs, strings.TrimSpace(string(data)))
		}
	}
	if len(docs) == 0 {
		return "", fmt.Errorf("no kwok stage files found in %s", kwokDir)
	}
	return path, os.WriteFile(path, []byte(strings.Join(docs, "\n---\n")+"\n"), 0o644)
}
