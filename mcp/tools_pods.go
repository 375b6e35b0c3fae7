package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/nocrd/nocrd/k8s"
)

// Accesses of the pod tools, from no-crd's tool-to-permission table.
var (
	podsList   = k8s.Access{Resource: "pods", Verb: "list"}
	podsGet    = k8s.Access{Resource: "pods", Verb: "get"}
	podsCreate = k8s.Access{Resource: "pods", Verb: "create"}
	podsPatch  = k8s.Access{Resource: "pods", Verb: "patch"}
	podsDelete = k8s.Access{Resource: "pods", Verb: "delete"}
	podsLogGet = k8s.Access{Resource: "pods/log", Verb: "get"}
	nsList     = k8s.Access{Resource: "namespaces", Verb: "list"}
)

// ListPodsInput is list_pods' input.
type ListPodsInput struct {
	Namespace     string `json:"namespace,omitempty" jsonschema:"target namespace; defaults to the server's namespace (in namespaced mode, the only one allowed)"`
	LabelSelector string `json:"labelSelector,omitempty" jsonschema:"comma-separated label query, e.g. app=dev,tier=frontend"`
	FieldSelector string `json:"fieldSelector,omitempty" jsonschema:"comma-separated field query, e.g. status.phase=Running"`
	Limit         int64  `json:"limit,omitempty" jsonschema:"maximum number of pods to return"`
}

// ListPodsOutput is list_pods' output.
type ListPodsOutput struct {
	Pods []k8s.PodSummary `json:"pods"`
}

// PodRef names a pod.
type PodRef struct {
	Name      string `json:"name" jsonschema:"name of the pod"`
	Namespace string `json:"namespace,omitempty" jsonschema:"target namespace; defaults to the server's namespace (in namespaced mode, the only one allowed)"`
}

// GetPodOutput is get_pod's output.
type GetPodOutput struct {
	Pod map[string]any `json:"pod" jsonschema:"the pod as the Kubernetes API returns it"`
}

// CreatePodInput is create_pod's input.
type CreatePodInput struct {
	Name          string           `json:"name" jsonschema:"name of the pod"`
	Namespace     string           `json:"namespace,omitempty" jsonschema:"target namespace; defaults to the server's namespace (in namespaced mode, the only one allowed)"`
	Containers    []map[string]any `json:"containers" jsonschema:"Kubernetes Container specs (name, image, command, volumeMounts, ...)"`
	Volumes       []map[string]any `json:"volumes,omitempty" jsonschema:"Kubernetes Volume specs"`
	RestartPolicy string           `json:"restartPolicy,omitempty" jsonschema:"Always, OnFailure or Never"`
}

// ObjectRef is the output of tools that create, change or delete one object.
type ObjectRef struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

// PatchPodInput is patch_pod's input.
type PatchPodInput struct {
	Name      string         `json:"name" jsonschema:"name of the pod"`
	Namespace string         `json:"namespace,omitempty" jsonschema:"target namespace; defaults to the server's namespace (in namespaced mode, the only one allowed)"`
	Patch     map[string]any `json:"patch" jsonschema:"strategic merge patch, e.g. {\"metadata\":{\"labels\":{\"k\":\"v\"}}}"`
}

// PatchPodOutput is patch_pod's output.
type PatchPodOutput struct {
	Name            string `json:"name"`
	Namespace       string `json:"namespace"`
	ResourceVersion string `json:"resourceVersion"`
}

// DeletePodInput is delete_pod's input.
type DeletePodInput struct {
	Name               string `json:"name" jsonschema:"name of the pod"`
	Namespace          string `json:"namespace,omitempty" jsonschema:"target namespace; defaults to the server's namespace (in namespaced mode, the only one allowed)"`
	GracePeriodSeconds *int64 `json:"gracePeriodSeconds,omitempty" jsonschema:"termination wait in seconds; 0 deletes immediately"`
}

// GetPodLogsInput is get_pod_logs' input.
type GetPodLogsInput struct {
	Name         string `json:"name" jsonschema:"name of the pod"`
	Namespace    string `json:"namespace,omitempty" jsonschema:"target namespace; defaults to the server's namespace (in namespaced mode, the only one allowed)"`
	Container    string `json:"container,omitempty" jsonschema:"container name (required if the pod has several containers)"`
	TailLines    *int64 `json:"tailLines,omitempty" jsonschema:"only the last N lines"`
	SinceSeconds *int64 `json:"sinceSeconds,omitempty" jsonschema:"only lines from the last N seconds"`
	Timestamps   bool   `json:"timestamps,omitempty" jsonschema:"prefix each line with its RFC3339 timestamp"`
	LimitBytes   *int64 `json:"limitBytes,omitempty" jsonschema:"return at most N bytes"`
	Previous     bool   `json:"previous,omitempty" jsonschema:"logs of the previous (crashed) container instance"`
}

// GetPodLogsOutput is get_pod_logs' output.
type GetPodLogsOutput struct {
	Logs string `json:"logs"`
}

// ListNamespacesOutput is list_namespaces' output.
type ListNamespacesOutput struct {
	Namespaces []string `json:"namespaces"`
}

func (s *Server) podTools() []toolSpec {
	return []toolSpec{
		newTool(&mcpsdk.Tool{
			Name:        "list_pods",
			Description: "Lists pods matching optional label and field selectors.",
			Annotations: readOnly("List pods"),
		}, []k8s.Access{podsList}, func(ctx context.Context, _ *mcpsdk.CallToolRequest, in ListPodsInput) (*mcpsdk.CallToolResult, ListPodsOutput, error) {
			pods, err := s.kube.ListPods(ctx, k8s.ListPodsOptions{Namespace: in.Namespace, LabelSelector: in.LabelSelector, FieldSelector: in.FieldSelector, Limit: in.Limit})
			if err != nil {
				return nil, ListPodsOutput{}, err
			}
			var b strings.Builder
			b.WriteString("NAME\tPHASE\tREADY\tRESTARTS\tPOD-IP\tNODE")
			for _, p := range pods {
				fmt.Fprintf(&b, "\n%s\t%s\t%d/%d\t%d\t%s\t%s", p.Name, p.Phase, p.Ready, p.Total, p.Restarts, p.PodIP, p.Node)
			}
			return text("%s", b.String()), ListPodsOutput{Pods: pods}, nil
		}),
		newTool(&mcpsdk.Tool{
			Name:        "get_pod",
			Description: "Fetches the complete Kubernetes API JSON of a pod.",
			Annotations: readOnly("Get pod"),
		}, []k8s.Access{podsGet}, func(ctx context.Context, _ *mcpsdk.CallToolRequest, in PodRef) (*mcpsdk.CallToolResult, GetPodOutput, error) {
			pod, err := s.kube.GetPod(ctx, in.Namespace, in.Name)
			if err != nil {
				return nil, GetPodOutput{}, err
			}
			obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(pod)
			if err != nil {
				return nil, GetPodOutput{}, err
			}
			js, err := json.MarshalIndent(obj, "", "  ")
			if err != nil {
				return nil, GetPodOutput{}, err
			}
			return text("%s", js), GetPodOutput{Pod: obj}, nil
		}),
		newTool(&mcpsdk.Tool{
			Name:        "create_pod",
			Description: "Creates a pod from container and volume specifications.",
			Annotations: additive("Create pod"),
		}, []k8s.Access{podsCreate}, func(ctx context.Context, _ *mcpsdk.CallToolRequest, in CreatePodInput) (*mcpsdk.CallToolResult, ObjectRef, error) {
			raw, err := json.Marshal(map[string]any{"containers": in.Containers, "volumes": in.Volumes, "restartPolicy": in.RestartPolicy})
			if err != nil {
				return nil, ObjectRef{}, err
			}
			spec, err := k8s.DecodePodSpec("containers/volumes", raw)
			if err != nil {
				return nil, ObjectRef{}, err
			}
			pod, err := s.kube.CreatePod(ctx, in.Namespace, metav1.ObjectMeta{Name: in.Name}, spec)
			if err != nil {
				return nil, ObjectRef{}, err
			}
			return text("Created pod %s in namespace %s", pod.Name, pod.Namespace), ObjectRef{Name: pod.Name, Namespace: pod.Namespace}, nil
		}),
		newTool(&mcpsdk.Tool{
			Name:        "patch_pod",
			Description: "Applies a strategic merge patch to a pod's labels, annotations or container resources.",
			Annotations: destructive("Patch pod", true),
		}, []k8s.Access{podsPatch}, func(ctx context.Context, _ *mcpsdk.CallToolRequest, in PatchPodInput) (*mcpsdk.CallToolResult, PatchPodOutput, error) {
			patch, err := json.Marshal(in.Patch)
			if err != nil {
				return nil, PatchPodOutput{}, err
			}
			pod, err := s.kube.PatchPod(ctx, in.Namespace, in.Name, patch)
			if err != nil {
				return nil, PatchPodOutput{}, err
			}
			out := PatchPodOutput{Name: pod.Name, Namespace: pod.Namespace, ResourceVersion: pod.ResourceVersion}
			return text("Patched pod %s (resourceVersion: %s)", pod.Name, pod.ResourceVersion), out, nil
		}),
		newTool(&mcpsdk.Tool{
			Name:        "delete_pod",
			Description: "Deletes a pod, with an optional grace period (0 deletes immediately).",
			Annotations: destructive("Delete pod", true),
		}, []k8s.Access{podsDelete}, func(ctx context.Context, _ *mcpsdk.CallToolRequest, in DeletePodInput) (*mcpsdk.CallToolResult, ObjectRef, error) {
			ns, err := s.kube.DeletePod(ctx, in.Namespace, in.Name, in.GracePeriodSeconds)
			if err != nil {
				return nil, ObjectRef{}, err
			}
			return text("Deleted pod %s from namespace %s", in.Name, ns), ObjectRef{Name: in.Name, Namespace: ns}, nil
		}),
		newTool(&mcpsdk.Tool{
			Name:        "get_pod_logs",
			Description: "Returns a container's stdout/stderr logs, optionally only the tail, a recent window, with timestamps, bounded in bytes, or of the previous instance.",
			Annotations: readOnly("Get pod logs"),
		}, []k8s.Access{podsLogGet}, func(ctx context.Context, _ *mcpsdk.CallToolRequest, in GetPodLogsInput) (*mcpsdk.CallToolResult, GetPodLogsOutput, error) {
			logs, err := s.kube.PodLogs(ctx, in.Name, k8s.LogOptions{
				Namespace: in.Namespace, Container: in.Container, TailLines: in.TailLines, SinceSeconds: in.SinceSeconds,
				LimitBytes: in.LimitBytes, Timestamps: in.Timestamps, Previous: in.Previous,
			})
			if err != nil {
				return nil, GetPodLogsOutput{}, err
			}
			return text("%s", logs), GetPodLogsOutput{Logs: logs}, nil
		}),
		newTool(&mcpsdk.Tool{
			Name:        "list_namespaces",
			Description: "Lists the namespaces in which the server may list pods (in namespaced mode, only its own).",
			Annotations: readOnly("List namespaces"),
		}, []k8s.Access{nsList}, func(ctx context.Context, _ *mcpsdk.CallToolRequest, _ noInput) (*mcpsdk.CallToolResult, ListNamespacesOutput, error) {
			nss, err := s.kube.ListNamespaces(ctx)
			if err != nil {
				return nil, ListNamespacesOutput{}, err
			}
			return text("NAME\n%s", strings.Join(nss, "\n")), ListNamespacesOutput{Namespaces: nss}, nil
		}),
	}
}

// podSpecOf decodes a tool's PodSpec argument, given as a JSON object or as
// a string holding one.
func podSpecOf(field string, v any) (*corev1.PodSpec, error) {
	if s, ok := v.(string); ok {
		return k8s.DecodePodSpec(field, []byte(s))
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return k8s.DecodePodSpec(field, raw)
}
