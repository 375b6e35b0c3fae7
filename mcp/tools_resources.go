package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nocrd/nocrd/k8s"
)

// The generic resource tools take in k-mcp's: any resource type the API
// server offers, found through discovery, except Secrets, ServiceAccounts
// and RBAC, inside the server's scope. They are offered only with
// RESOURCE_TOOLS (see Config). They act with the server's identity, so not
// for callers with a token (k8s.CallerError), unless
// RESOURCE_TOOLS_CALLER_TOKEN has them call Kubernetes with the caller's
// own token, as k-mcp does: then RBAC decides for each caller.

// tokenKey holds the verified bearer token in TokenInfo.Extra, for
// RESOURCE_TOOLS_CALLER_TOKEN.
const tokenKey = "nocrd/token"

// resourceClient is the client a resource tool calls Kubernetes with:
// the server's, or under RESOURCE_TOOLS_CALLER_TOKEN one with the
// request's own bearer token (the verified one with AUTH_ENABLED, on
// either HTTP transport; else the streamable request's header, which the
// API server alone checks).
func (s *Server) resourceClient(ctx context.Context, req *mcpsdk.CallToolRequest) (*k8s.Client, error) {
	if !s.cfg.ResourceToolsCallerToken {
		return s.kube, nil
	}
	var extra *mcpsdk.RequestExtra
	if req != nil {
		extra = req.Extra
	}
	token := ""
	if ti := tokenInfo(ctx, extra); ti != nil {
		token, _ = ti.Extra[tokenKey].(string)
	}
	if token == "" && extra != nil {
		if scheme, t, ok := strings.Cut(extra.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
			token = strings.TrimSpace(t)
		}
	}
	if token == "" {
		return nil, errors.New("this server calls Kubernetes with the caller's own token for the resource tools: send Authorization: Bearer <a token the API server accepts> on the streamable HTTP transport")
	}
	return s.kube.ForToken(token)
}

// ResourceListInput is resource_list's input.
type ResourceListInput struct {
	Resource      string `json:"resource" jsonschema:"resource type as kubectl takes it: pods, po, deployments.apps, Deployment, a CRD's plural"`
	Namespace     string `json:"namespace,omitempty" jsonschema:"target namespace for namespaced types; defaults to the server's namespace (in namespaced mode, the only one allowed)"`
	AllNamespaces bool   `json:"allNamespaces,omitempty" jsonschema:"list a namespaced type in every namespace, as kubectl -A (cluster mode only)"`
	LabelSelector string `json:"labelSelector,omitempty" jsonschema:"label selector, e.g. app=web,tier!=db"`
	FieldSelector string `json:"fieldSelector,omitempty" jsonschema:"field selector, e.g. metadata.name=x"`
	Limit         int64  `json:"limit,omitempty" jsonschema:"maximum number of objects to return"`
}

// ResourceListItem is one object in resource_list's output.
type ResourceListItem struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace,omitempty"`
	Age       string            `json:"age"`
	Labels    map[string]string `json:"labels,omitempty"`
	Columns   map[string]any    `json:"columns,omitempty" jsonschema:"the object's values of the list's columns, by column name"`
}

// ResourceListOutput is resource_list's output.
type ResourceListOutput struct {
	Resource   string             `json:"resource" jsonschema:"the type's resource.group name"`
	Kind       string             `json:"kind"`
	Namespaced bool               `json:"namespaced"`
	Namespace  string             `json:"namespace,omitempty" jsonschema:"where the objects were listed (namespaced types; absent for all namespaces)"`
	Columns    []string           `json:"columns,omitempty" jsonschema:"what kubectl get prints of each object besides its name, as the API server renders the type (Ready, Status, Age, a CRD's printer columns)"`
	Items      []ResourceListItem `json:"items"`
	More       bool               `json:"more" jsonschema:"the list stopped at limit; more objects exist"`
}

// ResourceGetInput is resource_get's input.
type ResourceGetInput struct {
	Resource  string `json:"resource" jsonschema:"resource type as kubectl takes it: pods, po, deployments.apps, Deployment, a CRD's plural"`
	Name      string `json:"name" jsonschema:"object name"`
	Namespace string `json:"namespace,omitempty" jsonschema:"namespace for namespaced types; defaults to the server's namespace (in namespaced mode, the only one allowed)"`
	Events    bool   `json:"events,omitempty" jsonschema:"also return the events about the object, as kubectl describe lists them (the latest 50)"`
}

// ResourceEvent is one event about an object.
type ResourceEvent struct {
	Type    string `json:"type" jsonschema:"Normal or Warning"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	From    string `json:"from,omitempty" jsonschema:"the component that reported it"`
	Count   int32  `json:"count"`
	Age     string `json:"age" jsonschema:"how long ago it last happened"`
}

// ResourceGetOutput is resource_get's output.
type ResourceGetOutput struct {
	Object map[string]any `json:"object" jsonschema:"the object as the API server returns it, without metadata.managedFields"`
	// Events is set (empty when there are none) only when asked for.
	Events *[]ResourceEvent `json:"events,omitempty" jsonschema:"with events: the events about the object, oldest first"`
}

// ResourceApplyInput is resource_apply's input.
type ResourceApplyInput struct {
	Manifest string `json:"manifest" jsonschema:"YAML or JSON objects, documents separated by ---; each with apiVersion, kind and metadata.name"`
	DryRun   bool   `json:"dryRun,omitempty" jsonschema:"only validate, with a server-side dry run; nothing is changed"`
}

// ResourceApplyResult is one object in resource_apply's output.
type ResourceApplyResult struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	Action     string `json:"action" jsonschema:"created or configured (in a dry run, what it would be)"`
	Unchecked  bool   `json:"unchecked,omitempty" jsonschema:"in a dry run: the object goes in a namespace the manifest creates, so the API server could not check it yet (a real apply checks it once the namespace exists)"`
}

// ResourceApplyOutput is resource_apply's output.
type ResourceApplyOutput struct {
	DryRun  bool                  `json:"dryRun"`
	Results []ResourceApplyResult `json:"results"`
	// NotConfirmed is set when the user was asked and did not confirm.
	NotConfirmed bool `json:"notConfirmed,omitempty" jsonschema:"the user was asked to confirm the apply and did not: nothing was applied"`
}

// cellText is a table cell as kubectl prints it.
func cellText(v any) string {
	if v == nil {
		return "<none>"
	}
	return fmt.Sprint(v)
}

// confirmApply is the ID of resource_apply's request for confirmation.
const confirmApply = "confirm_apply"

// canElicit reports whether the calling client can be asked for input
// with a form (an elicitation capability without one means a form, as
// before elicitation had modes).
func canElicit(req *mcpsdk.CallToolRequest) bool {
	caps := req.ClientCapabilities()
	return caps != nil && caps.Elicitation != nil && (caps.Elicitation.Form != nil || caps.Elicitation.URL == nil)
}

// confirmation is the request that asks the user to confirm an apply
// whose dry run gave plan.
func confirmation(plan []k8s.Applied) *mcpsdk.ElicitParams {
	var b strings.Builder
	b.WriteString("Apply these objects to the cluster (server-side apply as nocrd)?\n")
	for _, a := range plan {
		b.WriteString("- " + appliedLine(a) + "\n")
	}
	return &mcpsdk.ElicitParams{
		Message: strings.TrimRight(b.String(), "\n"),
		RequestedSchema: map[string]any{
			"type": "object",
			"properties": map[string]any{
				"confirm": map[string]any{"type": "boolean", "title": "Apply", "description": "apply the objects listed"},
			},
			"required": []string{"confirm"},
		},
	}
}

// appliedLine is what an apply did to one object, or would do, for
// people: "configmap/x in ns created".
func appliedLine(a k8s.Applied) string {
	line := strings.ToLower(a.Kind) + "/" + a.Name
	if a.Namespace != "" {
		line += " in " + a.Namespace
	}
	line += " " + a.Action
	if a.Unchecked {
		line += " (not checked: its namespace does not exist yet)"
	}
	return line
}

// confirmed reports whether the answer to confirmation says yes.
func confirmed(answer mcpsdk.InputResponse) bool {
	r, ok := answer.(*mcpsdk.ElicitResult)
	return ok && r.Action == "accept" && r.Content["confirm"] == true
}

func (s *Server) resourceTools() []toolSpec {
	if !s.cfg.ResourceTools {
		return nil
	}
	// Applying can change and remove fields of existing objects; the same
	// manifest again changes nothing.
	apply := destructive("Apply resources", true)
	return []toolSpec{
		newTool(&mcpsdk.Tool{
			Name:        "resource_list",
			Description: "Lists the objects of any resource type the cluster offers (found through discovery, so CRDs too), in one namespace or (allNamespaces, cluster mode) in all, with optional label and field selectors. Secrets, ServiceAccounts and RBAC objects are never listed.",
			Annotations: readOnly("List resources"),
		}, nil, func(ctx context.Context, req *mcpsdk.CallToolRequest, in ResourceListInput) (*mcpsdk.CallToolResult, ResourceListOutput, error) {
			kube, err := s.resourceClient(ctx, req)
			if err != nil {
				return nil, ResourceListOutput{}, err
			}
			l, err := kube.ListResources(ctx, k8s.ResourceQuery{Type: in.Resource, Namespace: in.Namespace, AllNamespaces: in.AllNamespaces, LabelSelector: in.LabelSelector, FieldSelector: in.FieldSelector, Limit: in.Limit})
			if err != nil {
				return nil, ResourceListOutput{}, err
			}
			out := ResourceListOutput{Resource: l.Resource, Kind: l.Kind, Namespaced: l.Namespaced, Namespace: l.Namespace, Columns: l.Columns, Items: []ResourceListItem{}, More: l.More}
			// The text is kubectl get's: the API server's columns when it
			// renders the type as a table, else the age.
			everywhere := l.Namespaced && l.Namespace == "" // kubectl -A
			header := []string{"NAME"}
			if everywhere {
				header = append([]string{"NAMESPACE"}, header...)
			}
			for _, c := range l.Columns {
				header = append(header, strings.ToUpper(c))
			}
			if len(l.Columns) == 0 {
				header = append(header, "AGE")
			}
			var b strings.Builder
			tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, strings.Join(header, "\t"))
			for _, it := range l.Items {
				age := ageOf(it.Created)
				item := ResourceListItem{Name: it.Name, Namespace: it.Namespace, Age: age, Labels: it.Labels}
				row := []string{it.Name}
				if everywhere {
					row = append([]string{it.Namespace}, row...)
				}
				for i, c := range l.Columns {
					if item.Columns == nil {
						item.Columns = map[string]any{}
					}
					item.Columns[c] = it.Cells[i]
					row = append(row, cellText(it.Cells[i]))
				}
				if len(l.Columns) == 0 {
					row = append(row, age)
				}
				out.Items = append(out.Items, item)
				fmt.Fprintln(tw, strings.Join(row, "\t"))
			}
			_ = tw.Flush()
			where := "cluster-wide"
			switch {
			case everywhere:
				where = "in all namespaces"
			case l.Namespaced:
				where = "in namespace " + l.Namespace
			}
			if len(l.Items) == 0 {
				return text("No %s found %s.", l.Resource, where), out, nil
			}
			more := ""
			if l.More {
				more = "\n(more exist beyond the limit)"
			}
			return text("%s %s:\n%s%s", l.Resource, where, b.String(), more), out, nil
		}),
		newTool(&mcpsdk.Tool{
			Name:        "resource_get",
			Description: "Returns one object of any resource type the cluster offers, as the API server returns it (without managedFields), and with events its events as kubectl describe lists them. Secrets, ServiceAccounts and RBAC objects are never returned.",
			Annotations: readOnly("Get resource"),
		}, nil, func(ctx context.Context, req *mcpsdk.CallToolRequest, in ResourceGetInput) (*mcpsdk.CallToolResult, ResourceGetOutput, error) {
			kube, err := s.resourceClient(ctx, req)
			if err != nil {
				return nil, ResourceGetOutput{}, err
			}
			o, err := kube.GetResource(ctx, in.Resource, in.Namespace, in.Name)
			if err != nil {
				return nil, ResourceGetOutput{}, err
			}
			b, err := json.MarshalIndent(o.Object, "", "  ")
			if err != nil {
				return nil, ResourceGetOutput{}, err
			}
			out := ResourceGetOutput{Object: o.Object}
			if !in.Events {
				return text("%s", b), out, nil
			}
			events, err := kube.EventsFor(ctx, o)
			if err != nil {
				return nil, ResourceGetOutput{}, err
			}
			list := make([]ResourceEvent, 0, len(events))
			out.Events = &list
			var t strings.Builder
			tw := tabwriter.NewWriter(&t, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TYPE\tREASON\tAGE\tFROM\tMESSAGE")
			for _, e := range events {
				age := ageOf(e.Last)
				list = append(list, ResourceEvent{Type: e.Type, Reason: e.Reason, Message: e.Message, From: e.From, Count: e.Count, Age: age})
				if e.Count > 1 {
					age = fmt.Sprintf("%s (x%d)", age, e.Count)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Type, e.Reason, age, e.From, e.Message)
			}
			_ = tw.Flush()
			if len(events) == 0 {
				return text("%s\n\nEvents: <none>", b), out, nil
			}
			return text("%s\n\nEvents:\n%s", b, strings.TrimRight(t.String(), "\n")), out, nil
		}),
		newTool(&mcpsdk.Tool{
			Name: "resource_apply",
			Description: "Applies YAML or JSON objects (documents separated by ---) with server-side apply as field manager nocrd, without forcing conflicts. " +
				"Every object is first checked with a server-side dry run, and nothing is applied unless all pass; dryRun stops there. " +
				"When the client can ask its user, the user confirms what the dry run found before anything is applied. " +
				"A manifest may create a namespace and what goes in it: those objects are checked once the namespace exists, and the namespace is removed again if one fails. " +
				"Pods and pod templates are refused (use create_pod, spawn_workspace and create_template, which validate and admit them), and so are Secrets, ServiceAccounts and RBAC objects. It deletes no object but a namespace it made in the same call, and an apply removes the fields nocrd applied before and the manifest no longer has.",
			Annotations: apply,
		}, nil, func(ctx context.Context, req *mcpsdk.CallToolRequest, in ResourceApplyInput) (*mcpsdk.CallToolResult, ResourceApplyOutput, error) {
			kube, err := s.resourceClient(ctx, req)
			if err != nil {
				return nil, ResourceApplyOutput{}, err
			}
			// As in k-mcp, the user confirms what the dry run found before
			// anything is applied, when the client can ask them: the call
			// answers with the question, and the client calls again with
			// the answer (the go-sdk does that round trip itself for
			// clients on protocol versions before 2026-07-28). A client
			// that cannot ask applies at once; it has the tool's
			// destructive annotation to go by.
			if !in.DryRun && canElicit(req) {
				answer, asked := req.Params.InputResponses[confirmApply]
				if !asked {
					plan, err := kube.ApplyResources(ctx, in.Manifest, true)
					if err != nil {
						return nil, ResourceApplyOutput{}, err
					}
					return &mcpsdk.CallToolResult{InputRequests: mcpsdk.InputRequestMap{confirmApply: confirmation(plan)}}, ResourceApplyOutput{}, nil
				}
				if !confirmed(answer) {
					return text("Nothing was applied: the user did not confirm the apply."), ResourceApplyOutput{Results: []ResourceApplyResult{}, NotConfirmed: true}, nil
				}
			}
			applied, err := kube.ApplyResources(ctx, in.Manifest, in.DryRun)
			if err != nil {
				return nil, ResourceApplyOutput{}, err
			}
			out := ResourceApplyOutput{DryRun: in.DryRun, Results: []ResourceApplyResult{}}
			var b strings.Builder
			for _, a := range applied {
				out.Results = append(out.Results, ResourceApplyResult{APIVersion: a.APIVersion, Kind: a.Kind, Namespace: a.Namespace, Name: a.Name, Action: a.Action, Unchecked: a.Unchecked})
				b.WriteString(appliedLine(a) + "\n")
			}
			if in.DryRun {
				b.WriteString("(dry run: nothing was changed)\n")
			}
			return text("%s", strings.TrimRight(b.String(), "\n")), out, nil
		}),
	}
}
