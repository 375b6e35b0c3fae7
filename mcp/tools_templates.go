package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nocrd/nocrd/k8s"
	"github.com/nocrd/nocrd/ui"
)

// Accesses of the template tools, from no-crd's tool-to-permission table.
var (
	cmGet    = k8s.Access{Resource: "configmaps", Verb: "get"}
	cmList   = k8s.Access{Resource: "configmaps", Verb: "list"}
	cmCreate = k8s.Access{Resource: "configmaps", Verb: "create"}
	cmUpdate = k8s.Access{Resource: "configmaps", Verb: "update"}
	cmDelete = k8s.Access{Resource: "configmaps", Verb: "delete"}
)

// TemplateSummary is one row of list_templates.
type TemplateSummary struct {
	Name        string `json:"name"`
	Namespace   string `json:"namespace"`
	Description string `json:"description"`
	Tag         string `json:"tag"`
	// Invalid says why the template's spec is not a usable PodSpec.
	Invalid string `json:"invalid,omitempty" jsonschema:"set when data.spec is not a valid PodSpec: the reason"`
}

// ListTemplatesInput is list_templates' input.
type ListTemplatesInput struct {
	Namespace string `json:"namespace,omitempty" jsonschema:"target namespace; defaults to the server's namespace (in namespaced mode, the only one allowed)"`
}

// ListTemplatesOutput is list_templates' output.
type ListTemplatesOutput struct {
	Templates []TemplateSummary `json:"templates"`
}

// TemplateRefInput names a template.
type TemplateRefInput struct {
	Name      string `json:"name" jsonschema:"template name"`
	Namespace string `json:"namespace,omitempty" jsonschema:"target namespace; defaults to the server's namespace (in namespaced mode, the only one allowed)"`
}

// TemplateDetail is get_template's output.
type TemplateDetail struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace"`
	Description string            `json:"description"`
	Tag         string            `json:"tag"`
	Spec        map[string]any    `json:"spec" jsonschema:"the stored PodSpec"`
	Annotations map[string]string `json:"annotations" jsonschema:"all annotations of the template ConfigMap, spawner annotations included"`
	Invalid     string            `json:"invalid,omitempty" jsonschema:"set when data.spec is not a valid PodSpec: the reason"`
}

// CreateTemplateInput is create_template's input.
type CreateTemplateInput struct {
	Name        string            `json:"name" jsonschema:"template name"`
	Namespace   string            `json:"namespace,omitempty" jsonschema:"target namespace; defaults to the server's namespace (in namespaced mode, the only one allowed)"`
	Description string            `json:"description,omitempty" jsonschema:"short description (annotation nogoo9/description)"`
	Tag         string            `json:"tag,omitempty" jsonschema:"tag or version (annotation nogoo9/tag)"`
	Spec        any               `json:"spec" jsonschema:"the PodSpec, as a JSON object or a string holding one"`
	Labels      map[string]string `json:"labels,omitempty" jsonschema:"extra labels for the template ConfigMap"`
	Annotations map[string]string `json:"annotations,omitempty" jsonschema:"extra annotations, e.g. spawner annotations such as nogoo9/required-context"`
}

// UpdateTemplateInput is update_template's input.
type UpdateTemplateInput struct {
	Name        string            `json:"name" jsonschema:"template name"`
	Namespace   string            `json:"namespace,omitempty" jsonschema:"target namespace; defaults to the server's namespace (in namespaced mode, the only one allowed)"`
	Description *string           `json:"description,omitempty" jsonschema:"new description; empty removes it"`
	Tag         *string           `json:"tag,omitempty" jsonschema:"new tag; empty removes it"`
	Spec        any               `json:"spec,omitempty" jsonschema:"replacement PodSpec, as a JSON object or a string holding one"`
	Labels      map[string]string `json:"labels,omitempty" jsonschema:"labels to set; an empty value removes the label"`
	Annotations map[string]string `json:"annotations,omitempty" jsonschema:"annotations to set; an empty value removes the annotation"`
}

// CreatePodFromTemplateInput is create_pod_from_template's input.
type CreatePodFromTemplateInput struct {
	TemplateRef        string           `json:"templateRef" jsonschema:"template reference: pod-template://namespace/name, namespace/name or name"`
	Name               string           `json:"name" jsonschema:"name of the pod to create"`
	Namespace          string           `json:"namespace,omitempty" jsonschema:"target namespace; defaults to the server's namespace (in namespaced mode, the only one allowed)"`
	ContainerOverrides []map[string]any `json:"containerOverrides,omitempty" jsonschema:"partial Containers, each with the name of a template container: image, env (merged by name), command, args, resources"`
	TopLevelOverrides  map[string]any   `json:"topLevelOverrides,omitempty" jsonschema:"partial PodSpec merged into the template's, e.g. restartPolicy, nodeSelector"`
}

func (s *Server) templateTools() []toolSpec {
	return []toolSpec{
		newTool(&mcpsdk.Tool{
			Name:        "list_templates",
			Description: "Lists pod templates: ConfigMaps labelled nogoo9/pod-template=true.",
			Annotations: readOnly("List templates"),
		}, []k8s.Access{cmList}, func(ctx context.Context, _ *mcpsdk.CallToolRequest, in ListTemplatesInput) (*mcpsdk.CallToolResult, ListTemplatesOutput, error) {
			ts, err := s.kube.ListTemplates(ctx, in.Namespace)
			if err != nil {
				return nil, ListTemplatesOutput{}, err
			}
			out := ListTemplatesOutput{Templates: make([]TemplateSummary, 0, len(ts))}
			lines := make([]string, 0, len(ts))
			for _, t := range ts {
				out.Templates = append(out.Templates, TemplateSummary{Name: t.Name, Namespace: t.Namespace, Description: t.Description, Tag: t.Tag, Invalid: t.Invalid})
				line := t.Name + "\t" + t.Description
				if t.Invalid != "" {
					line += "\tINVALID: " + t.Invalid
				}
				lines = append(lines, line)
			}
			if len(lines) == 0 {
				return text("No templates found"), out, nil
			}
			return text("%s", strings.Join(lines, "\n")), out, nil
		}),
		newTool(&mcpsdk.Tool{
			Name:        "get_template",
			Description: "Returns a template's stored pod spec, description, tag and annotations.",
			Annotations: readOnly("Get template"),
		}, []k8s.Access{cmGet}, func(ctx context.Context, _ *mcpsdk.CallToolRequest, in TemplateRefInput) (*mcpsdk.CallToolResult, TemplateDetail, error) {
			t, err := s.kube.GetTemplate(ctx, in.Namespace, in.Name)
			if err != nil {
				return nil, TemplateDetail{}, err
			}
			d := TemplateDetail{Name: t.Name, Namespace: t.Namespace, Description: t.Description, Tag: t.Tag, Annotations: t.Annotations, Invalid: t.Invalid, Spec: map[string]any{}}
			if t.Invalid == "" {
				if err := json.Unmarshal([]byte(t.RawSpec), &d.Spec); err != nil {
					return nil, TemplateDetail{}, err
				}
				return text("%s", t.RawSpec), d, nil
			}
			return text("Template %s/%s has an invalid spec: %s\n%s", t.Namespace, t.Name, t.Invalid, t.RawSpec), d, nil
		}),
		newTool(&mcpsdk.Tool{
			Name:        "create_template",
			Description: "Stores a new pod template as a ConfigMap labelled nogoo9/pod-template=true.",
			Annotations: additive("Create template"),
		}, []k8s.Access{cmCreate}, func(ctx context.Context, _ *mcpsdk.CallToolRequest, in CreateTemplateInput) (*mcpsdk.CallToolResult, ObjectRef, error) {
			spec, err := podSpecOf("spec", in.Spec)
			if err != nil {
				return nil, ObjectRef{}, err
			}
			t, err := s.kube.CreateTemplate(ctx, k8s.TemplateInput{
				Name: in.Name, Namespace: in.Namespace, Description: in.Description, Tag: in.Tag,
				Spec: spec, Labels: in.Labels, Annotations: in.Annotations,
			})
			if err != nil {
				return nil, ObjectRef{}, err
			}
			return text("Created template %s", t.Name), ObjectRef{Name: t.Name, Namespace: t.Namespace}, nil
		}),
		newTool(&mcpsdk.Tool{
			Name:        "update_template",
			Description: "Changes the description, tag, labels, annotations or pod spec of an existing template.",
			Annotations: destructive("Update template", true),
		}, []k8s.Access{cmGet, cmUpdate}, func(ctx context.Context, _ *mcpsdk.CallToolRequest, in UpdateTemplateInput) (*mcpsdk.CallToolResult, ObjectRef, error) {
			up := k8s.TemplateUpdate{Description: in.Description, Tag: in.Tag, Labels: in.Labels, Annotations: in.Annotations}
			if in.Spec != nil {
				spec, err := podSpecOf("spec", in.Spec)
				if err != nil {
					return nil, ObjectRef{}, err
				}
				up.Spec = spec
			}
			t, err := s.kube.UpdateTemplate(ctx, in.Namespace, in.Name, up)
			if err != nil {
				return nil, ObjectRef{}, err
			}
			return text("Updated template %s", t.Name), ObjectRef{Name: t.Name, Namespace: t.Namespace}, nil
		}),
		newTool(&mcpsdk.Tool{
			Name:        "delete_template",
			Description: "Deletes a pod template ConfigMap (ConfigMaps that are not templates are never deleted).",
			Annotations: destructive("Delete template", true),
		}, []k8s.Access{cmGet, cmDelete}, func(ctx context.Context, _ *mcpsdk.CallToolRequest, in TemplateRefInput) (*mcpsdk.CallToolResult, ObjectRef, error) {
			ns, err := s.kube.DeleteTemplate(ctx, in.Namespace, in.Name)
			if err != nil {
				return nil, ObjectRef{}, err
			}
			return text("Deleted template %s", in.Name), ObjectRef{Name: in.Name, Namespace: ns}, nil
		}),
		newTool(&mcpsdk.Tool{
			Name:        "create_pod_from_template",
			Description: "Creates a pod from a template, applying container overrides (image, env, command, resources) and top-level pod spec overrides.",
			Annotations: additive("Create pod from template"),
		}, []k8s.Access{cmGet, podsCreate}, func(ctx context.Context, req *mcpsdk.CallToolRequest, in CreatePodFromTemplateInput) (*mcpsdk.CallToolResult, ObjectRef, error) {
			ft := k8s.FromTemplate{TemplateRef: in.TemplateRef, Name: in.Name, Namespace: in.Namespace}
			if s.kube.Admission() {
				// Admission policies see who asks; without authentication
				// that is anonymous.
				owner, _, err := s.caller(ctx, nil)
				if err != nil {
					return nil, ObjectRef{}, err
				}
				ft.Owner, ft.Claims = owner, s.claims(ctx, nil)
			}
			for _, o := range in.ContainerOverrides {
				raw, err := json.Marshal(o)
				if err != nil {
					return nil, ObjectRef{}, err
				}
				ft.ContainerOverrides = append(ft.ContainerOverrides, raw)
			}
			if in.TopLevelOverrides != nil {
				raw, err := json.Marshal(in.TopLevelOverrides)
				if err != nil {
					return nil, ObjectRef{}, err
				}
				ft.TopLevelOverrides = raw
			}
			pod, err := s.kube.CreatePodFromTemplate(ctx, ft)
			if err != nil {
				return nil, ObjectRef{}, err
			}
			return text("Created pod %s in namespace %s", pod.Name, pod.Namespace), ObjectRef{Name: pod.Name, Namespace: pod.Namespace}, nil
		}),
	}
}

// addResources registers the Pod Manager's MCP App resource (when
// UI_ENABLED) and the pod-template resource template.
func (s *Server) addResources() {
	if s.cfg.UIEnabled {
		app := ui.Page("")
		s.sdk.AddResource(&mcpsdk.Resource{
			URI:         ui.ResourceURI,
			Name:        "pod-manager",
			Title:       "Pod Manager",
			Description: "nocrd's Pod Manager as an MCP App: lists workspaces and templates, spawns and stops workspaces and shows their logs, calling this server's tools through the host.",
			MIMEType:    ui.ResourceMIMEType,
			Size:        int64(len(app)),
		}, func(context.Context, *mcpsdk.ReadResourceRequest) (*mcpsdk.ReadResourceResult, error) {
			return &mcpsdk.ReadResourceResult{Contents: []*mcpsdk.ResourceContents{{URI: ui.ResourceURI, MIMEType: ui.ResourceMIMEType, Text: string(app)}}}, nil
		})
	}
	s.sdk.AddResourceTemplate(&mcpsdk.ResourceTemplate{
		Name:        "pod-template",
		Title:       "Pod template",
		Description: "A stored pod template's PodSpec as JSON (read-only).",
		MIMEType:    "application/json",
		URITemplate: k8s.TemplateURIScheme + "{namespace}/{name}",
	}, func(ctx context.Context, req *mcpsdk.ReadResourceRequest) (*mcpsdk.ReadResourceResult, error) {
		uri := req.Params.URI
		rest, ok := strings.CutPrefix(uri, k8s.TemplateURIScheme)
		ns, name, found := strings.Cut(rest, "/")
		if !ok || !found {
			return nil, mcpsdk.ResourceNotFoundError(uri)
		}
		t, err := s.kube.GetTemplate(ctx, ns, name)
		if err != nil {
			var nf *k8s.NotFoundError
			if errors.As(err, &nf) {
				return nil, mcpsdk.ResourceNotFoundError(uri)
			}
			return nil, err
		}
		if t.Invalid != "" {
			return nil, fmt.Errorf("template %s/%s has an invalid spec: %s", ns, name, t.Invalid)
		}
		return &mcpsdk.ReadResourceResult{Contents: []*mcpsdk.ResourceContents{{URI: uri, MIMEType: "application/json", Text: t.RawSpec}}}, nil
	})
}
