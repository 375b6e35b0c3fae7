package mcp

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nocrd/nocrd/k8s"
)

// PermissionReport is check_permissions' structured output, in no-crd's
// shape: which tools the identity may use and the access behind each.
type PermissionReport struct {
	Mode          string                     `json:"mode" jsonschema:"access scope: cluster or namespaced"`
	Namespace     string                     `json:"namespace" jsonschema:"the default (or, in namespaced mode, the only) namespace"`
	EnabledTools  []string                   `json:"enabledTools" jsonschema:"tools this identity may use"`
	DisabledTools []string                   `json:"disabledTools" jsonschema:"tools withheld for lack of permission"`
	Permissions   map[string]map[string]bool `json:"permissions" jsonschema:"resource -> verb -> allowed"`
}

// checkPermissions asks the API server which accesses the identity has and
// derives the enabled tools. At start-up with permission checks disabled
// (live false) every tool is enabled and nothing is asked; check_permissions
// always asks (live true).
func (s *Server) checkPermissions(ctx context.Context, specs []toolSpec, live bool) (*PermissionReport, error) {
	r := &PermissionReport{
		Mode:          string(s.kube.Mode()),
		Namespace:     s.kube.DefaultNamespace(),
		EnabledTools:  []string{},
		DisabledTools: []string{},
		Permissions:   map[string]map[string]bool{},
	}
	if s.cfg.DisablePermissionChecks && !live {
		for _, t := range specs {
			r.EnabledTools = append(r.EnabledTools, t.tool.Name)
		}
		return r, nil
	}
	var all []k8s.Access
	for _, t := range specs {
		for _, a := range s.needs(t) {
			if !slices.Contains(all, a) {
				all = append(all, a)
			}
		}
	}
	allowed, err := s.kube.CheckAccess(ctx, all)
	if err != nil {
		return nil, fmt.Errorf("check permissions: %w", err)
	}
	for a, ok := range allowed {
		if r.Permissions[a.Resource] == nil {
			r.Permissions[a.Resource] = map[string]bool{}
		}
		r.Permissions[a.Resource][a.Verb] = ok
	}
	for _, t := range specs {
		enabled := true
		for _, a := range s.needs(t) {
			enabled = enabled && allowed[a]
		}
		if enabled {
			r.EnabledTools = append(r.EnabledTools, t.tool.Name)
		} else {
			r.DisabledTools = append(r.DisabledTools, t.tool.Name)
		}
	}
	return r, nil
}

// needs returns the accesses a tool requires in the server's mode: listing
// namespaces needs no permission in namespaced mode, where it answers with
// the configured namespace alone.
func (s *Server) needs(t toolSpec) []k8s.Access {
	if s.kube.Mode() == k8s.ModeNamespaced {
		return slices.DeleteFunc(slices.Clone(t.needs), func(a k8s.Access) bool { return a.Resource == "namespaces" })
	}
	return t.needs
}

type noInput struct{}

// CurrentNamespace is current_namespace's structured output.
type CurrentNamespace struct {
	Namespace string `json:"namespace" jsonschema:"the default namespace for operations"`
	Mode      string `json:"mode" jsonschema:"access scope: cluster or namespaced"`
}

func (s *Server) utilTools() []toolSpec {
	return []toolSpec{
		newTool(&mcpsdk.Tool{
			Name:        "current_namespace",
			Description: "Returns the default namespace and scope (mode) currently bound to the MCP server.",
			Annotations: readOnly("Current namespace"),
		}, nil, func(ctx context.Context, _ *mcpsdk.CallToolRequest, _ noInput) (*mcpsdk.CallToolResult, CurrentNamespace, error) {
			out := CurrentNamespace{Namespace: s.kube.DefaultNamespace(), Mode: string(s.kube.Mode())}
			return text("Namespace: %s\nMode: %s", out.Namespace, out.Mode), out, nil
		}),
		newTool(&mcpsdk.Tool{
			Name:        "check_permissions",
			Description: "Checks the server's Kubernetes RBAC permissions with SelfSubjectAccessReview and reports which MCP tools are enabled or disabled.",
			Annotations: readOnly("Check permissions"),
		}, nil, func(ctx context.Context, _ *mcpsdk.CallToolRequest, _ noInput) (*mcpsdk.CallToolResult, *PermissionReport, error) {
			specs := s.toolSpecs()
			r, err := s.checkPermissions(ctx, specs, true)
			if err != nil {
				return nil, nil, err
			}
			s.syncTools(specs, r.EnabledTools)
			return text("%s", formatReport(r)), r, nil
		}),
	}
}

func formatReport(r *PermissionReport) string {
	var b strings.Builder
	b.WriteString("--- RBAC PERMISSIONS ---\nRESOURCE\tVERB\tALLOWED\n")
	resources := make([]string, 0, len(r.Permissions))
	for res := range r.Permissions {
		resources = append(resources, res)
	}
	slices.Sort(resources)
	for _, res := range resources {
		verbs := make([]string, 0, len(r.Permissions[res]))
		for v := range r.Permissions[res] {
			verbs = append(verbs, v)
		}
		slices.Sort(verbs)
		for _, v := range verbs {
			mark := "✘ NO"
			if r.Permissions[res][v] {
				mark = "✔ YES"
			}
			fmt.Fprintf(&b, "%s\t%s\t%s\n", res, v, mark)
		}
	}
	fmt.Fprintf(&b, "\nMode: %s\nNamespace: %s\nEnabled tools: %s\nDisabled tools: %s\n",
		r.Mode, r.Namespace, strings.Join(r.EnabledTools, ", "), orNone(r.DisabledTools))
	return b.String()
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}

// syncTools registers the tools of specs named in enabled that are not
// registered yet, and withdraws the registered ones not named, so that
// rights granted or revoked after start-up take effect when
// check_permissions next asks (clients are sent tools/list_changed). With
// permission checks disabled every tool stays registered.
func (s *Server) syncTools(specs []toolSpec, enabled []string) {
	if s.cfg.DisablePermissionChecks {
		return
	}
	s.toolsMu.Lock()
	defer s.toolsMu.Unlock()
	var withdraw []string
	for _, t := range specs {
		on, registered := slices.Contains(enabled, t.tool.Name), s.registered[t.tool.Name]
		switch {
		case on && !registered:
			t.add(s.sdk)
			s.log.Info("mcp tool registered: its permissions were granted", "tool", t.tool.Name)
		case !on && registered:
			withdraw = append(withdraw, t.tool.Name)
			s.log.Info("mcp tool withdrawn: its permissions were revoked", "tool", t.tool.Name)
		}
		s.registered[t.tool.Name] = on
	}
	if len(withdraw) > 0 {
		s.sdk.RemoveTools(withdraw...)
	}
}

// ageOf is how long ago t was, to the second, as the tools print ages;
// empty for a zero time.
func ageOf(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return time.Since(t).Round(time.Second).String()
}
