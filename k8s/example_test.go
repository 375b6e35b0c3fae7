package k8s_test

import (
	"context"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/k8s"
)

// Example spawns a workspace, waits until it is ready, lists the
// workspaces and stops it: nocrd's Go SDK, the same API the MCP tools use.
func Example() {
	ctx := context.Background()
	namespace := fmt.Sprintf("sdk-example-%d", os.Getpid())
	kube, err := k8s.New(k8s.Config{
		Mode:       k8s.ModeCluster,
		Namespace:  namespace,
		Kubeconfig: testenv.KubeconfigPath(), // or "" for in-cluster / ~/.kube/config
	})
	if err != nil {
		panic(err)
	}
	// The namespace must exist; the example makes its own.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if _, err := kube.Kubernetes().CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		panic(err)
	}
	defer kube.Kubernetes().CoreV1().Namespaces().Delete(ctx, namespace, metav1.DeleteOptions{})

	w, err := kube.SpawnWorkspace(ctx, k8s.SpawnRequest{
		ID:      "agent-session-42",
		Spec:    &corev1.PodSpec{Containers: []corev1.Container{{Name: "workspace", Image: "node:22-alpine", Command: []string{"sleep", "infinity"}}}},
		Context: map[string]string{"S3_BUCKET": "my-bucket", "S3_FOLDER": "session-42"},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("spawned pod:", w.PodName)

	w, err = kube.WaitReady(ctx, w, func(stage string) { fmt.Println("  stage:", stage) })
	if err != nil {
		panic(err)
	}
	fmt.Println("ready:", w.Ready)

	list, err := kube.ListWorkspaces(ctx, "", "")
	if err != nil {
		panic(err)
	}
	fmt.Println("active workspaces:", len(list))

	stopped, err := kube.StopWorkspace(ctx, "", "agent-session-42", "")
	if err != nil {
		panic(err)
	}
	fmt.Println("stopped:", stopped.Phase)
	// Output:
	// spawned pod: ws-anonymous-agent-session-42
	//   stage: created
	//   stage: scheduled
	//   stage: ready
	// ready: true
	// active workspaces: 1
	// stopped: Terminating
}
