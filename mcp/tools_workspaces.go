package mcp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nocrd/nocrd/internal/auth"
	"github.com/nocrd/nocrd/k8s"
)

// Accesses of the workspace tools, from no-crd's tool-to-permission table.
var (
	podsCreateWS = []k8s.Access{podsCreate, podsList}
	podsStopWS   = []k8s.Access{podsDelete, podsList}
)

// maxWait bounds spawn_workspace's wait.
const maxWait = 10 * time.Minute

// WorkspaceRow is one workspace in list_workspaces and spawn_workspace.
type WorkspaceRow struct {
	ID       string `json:"id"`
	Name     string `json:"name" jsonschema:"pod name"`
	Status   string `json:"status" jsonschema:"pod phase, or Terminating"`
	Owner    string `json:"owner"`
	Ready    bool   `json:"ready"`
	PodIP    string `json:"podIP"`
	Template string `json:"template" jsonschema:"namespace/name of the template it was made from, if any"`
	Age      string `json:"age"`
}

func rowOf(w k8s.Workspace) WorkspaceRow {
	return WorkspaceRow{ID: w.ID, Name: w.PodName, Status: w.Phase, Owner: w.Owner, Ready: w.Ready, PodIP: w.PodIP, Template: w.Template, Age: ageOf(w.Created)}
}

// ListWorkspacesInput is list_workspaces' input.
type ListWorkspacesInput struct {
	Namespace  string         `json:"namespace,omitempty" jsonschema:"target namespace; defaults to the server's namespace (in namespaced mode, the only one allowed)"`
	JWTPayload map[string]any `json:"jwtPayload,omitempty" jsonschema:"decoded JWT payload whose subject filters the list; honoured only when AUTH_ENABLED is false (with auth, the verified bearer token decides)"`
}

// ListWorkspacesOutput is list_workspaces' output.
type ListWorkspacesOutput struct {
	Workspaces []WorkspaceRow `json:"workspaces"`
}

// SpawnWorkspaceInput is spawn_workspace's input.
type SpawnWorkspaceInput struct {
	ID             string            `json:"id" jsonschema:"unique workspace (agent session) identifier: up to 63 letters, digits, '-', '_' or '.'"`
	TemplateRef    string            `json:"templateRef,omitempty" jsonschema:"template reference: pod-template://namespace/name, namespace/name or name"`
	Spec           any               `json:"spec,omitempty" jsonschema:"inline PodSpec, when no templateRef is given"`
	Annotations    map[string]string `json:"annotations,omitempty" jsonschema:"spawner annotations (nogoo9/init-image, nogoo9/pre-stop-command, ...); they override the template's"`
	Namespace      string            `json:"namespace,omitempty" jsonschema:"target namespace; defaults to the server's namespace (in namespaced mode, the only one allowed)"`
	Context        map[string]string `json:"context,omitempty" jsonschema:"values for the template's nogoo9/required-context keys; passed to the containers as environment variables"`
	JWTPayload     map[string]any    `json:"jwtPayload,omitempty" jsonschema:"decoded JWT payload naming the owner; honoured only when AUTH_ENABLED is false"`
	Wait           bool              `json:"wait,omitempty" jsonschema:"wait until the pod is Running and Ready with an IP, sending progress notifications"`
	TimeoutSeconds int               `json:"timeoutSeconds,omitempty" jsonschema:"how long to wait (default 120, at most 600)"`
}

// SpawnWorkspaceOutput is spawn_workspace's output.
type SpawnWorkspaceOutput struct {
	ID       string `json:"id"`
	PodName  string `json:"podName"`
	Existing bool   `json:"existing" jsonschema:"the workspace already existed for this owner and was returned as it is"`
	Status   string `json:"status,omitempty"`
	Ready    bool   `json:"ready"`
	PodIP    string `json:"podIP,omitempty"`
}

// StopWorkspaceInput is stop_workspace's input.
type StopWorkspaceInput struct {
	ID         string         `json:"id" jsonschema:"workspace ID to terminate"`
	Namespace  string         `json:"namespace,omitempty" jsonschema:"target namespace; defaults to the server's namespace (in namespaced mode, the only one allowed)"`
	JWTPayload map[string]any `json:"jwtPayload,omitempty" jsonschema:"decoded JWT payload naming the owner; honoured only when AUTH_ENABLED is false"`
}

// StopWorkspaceOutput is stop_workspace's output.
type StopWorkspaceOutput struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// errNoIdentity is returned by workspace tools when authentication is on
// and the request carries no verified identity.
var errNoIdentity = errors.New("authentication required: AUTH_ENABLED is set and this request carries no verified bearer token")

// caller returns the owner a workspace request acts for. With
// authentication on, only a verified token's subject counts (the caller
// actForCaller put in ctx) and jwtPayload is ignored; with it off,
// jwtPayload's subject, else anonymous. explicit reports whether an
// identity was given at all.
func (s *Server) caller(ctx context.Context, jwtPayload map[string]any) (owner string, explicit bool, err error) {
	if s.identity.Enabled {
		c, ok := k8s.CallerFrom(ctx)
		if !ok || c.Subject == "" {
			return "", false, errNoIdentity
		}
		return c.Subject, true, nil
	}
	if jwtPayload == nil {
		return k8s.Anonymous, false, nil
	}
	sub, err := auth.Subject(jwtPayload, s.identity.SubJSONPath)
	if err != nil {
		return "", false, fmt.Errorf("jwtPayload: %w", err)
	}
	return sub, true, nil
}

// claimsKey holds the verified token's claims in TokenInfo.Extra.
const claimsKey = "claims"

// claims returns the caller's claims for admission policies: the verified
// token's with authentication on, else the jwtPayload given, if any.
func (s *Server) claims(ctx context.Context, jwtPayload map[string]any) map[string]any {
	if !s.identity.Enabled {
		return jwtPayload
	}
	c, _ := k8s.CallerFrom(ctx)
	return c.Claims
}

func (s *Server) workspaceTools() []toolSpec {
	return []toolSpec{
		newTool(&mcpsdk.Tool{
			Name:        "list_workspaces",
			Description: "Lists agent workspace pods (label nogoo9/type=workspace): all of them, or the caller's own when an identity is given (always with AUTH_ENABLED).",
			Annotations: readOnly("List workspaces"),
		}, []k8s.Access{podsList}, func(ctx context.Context, req *mcpsdk.CallToolRequest, in ListWorkspacesInput) (*mcpsdk.CallToolResult, ListWorkspacesOutput, error) {
			owner, explicit, err := s.caller(ctx, in.JWTPayload)
			if err != nil {
				return nil, ListWorkspacesOutput{}, err
			}
			if !explicit {
				owner = "" // no identity and no auth: every workspace
			}
			ws, err := s.kube.ListWorkspaces(ctx, in.Namespace, owner)
			if err != nil {
				return nil, ListWorkspacesOutput{}, err
			}
			out := ListWorkspacesOutput{Workspaces: make([]WorkspaceRow, 0, len(ws))}
			var b strings.Builder
			b.WriteString("ID\tNAME\tSTATUS")
			for _, w := range ws {
				out.Workspaces = append(out.Workspaces, rowOf(w))
				fmt.Fprintf(&b, "\n%s\t%s\t%s", w.ID, w.PodName, w.Phase)
			}
			return text("%s", b.String()), out, nil
		}),
		newTool(&mcpsdk.Tool{
			Name: "spawn_workspace",
			Description: "Spawns a workspace pod from a template or an inline spec, applying the spawner annotations (required context, init container, pre-stop hook, grace period, IAM role, port, TTL). " +
				"Idempotent by id for the same owner. With wait, reports progress until the pod is Ready and returns its IP.",
			Annotations: additive("Spawn workspace"),
		}, podsCreateWS, func(ctx context.Context, req *mcpsdk.CallToolRequest, in SpawnWorkspaceInput) (*mcpsdk.CallToolResult, SpawnWorkspaceOutput, error) {
			owner, _, err := s.caller(ctx, in.JWTPayload)
			if err != nil {
				return nil, SpawnWorkspaceOutput{}, err
			}
			if in.TimeoutSeconds < 0 || in.TimeoutSeconds > int(maxWait/time.Second) {
				return nil, SpawnWorkspaceOutput{}, fmt.Errorf("invalid timeoutSeconds: must be between 0 and %d, got %d", int(maxWait/time.Second), in.TimeoutSeconds)
			}
			sr := k8s.SpawnRequest{ID: in.ID, TemplateRef: in.TemplateRef, Annotations: in.Annotations, Namespace: in.Namespace, Context: in.Context, Owner: owner, Claims: s.claims(ctx, in.JWTPayload)}
			if in.Spec != nil {
				if sr.Spec, err = podSpecOf("spec", in.Spec); err != nil {
					return nil, SpawnWorkspaceOutput{}, err
				}
			}
			w, err := s.kube.SpawnWorkspace(ctx, sr)
			if err != nil {
				return nil, SpawnWorkspaceOutput{}, err
			}
			if in.Wait {
				timeout := 120 * time.Second
				if in.TimeoutSeconds > 0 {
					timeout = time.Duration(in.TimeoutSeconds) * time.Second
				}
				wctx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				step := 0.0
				if w, err = s.kube.WaitReady(wctx, w, func(stage string) {
					step++
					notifyProgress(ctx, req, step, "workspace "+in.ID+": "+stage)
				}); err != nil {
					return nil, SpawnWorkspaceOutput{}, err
				}
			}
			out := SpawnWorkspaceOutput{ID: w.ID, PodName: w.PodName, Existing: w.Existing, Status: w.Phase, Ready: w.Ready, PodIP: w.PodIP}
			msg := fmt.Sprintf("Spawned workspace %s (Pod: %s)", w.ID, w.PodName)
			if w.Existing {
				msg = fmt.Sprintf("Workspace %s already exists (Pod: %s)", w.ID, w.PodName)
			}
			if w.Ready {
				msg += fmt.Sprintf("; ready at %s", w.PodIP)
			}
			return text("%s", msg), out, nil
		}),
		newTool(&mcpsdk.Tool{
			Name:        "stop_workspace",
			Description: "Starts graceful termination of the caller's workspace pod; its pre-stop hook runs within the grace period.",
			Annotations: destructive("Stop workspace", true),
		}, podsStopWS, func(ctx context.Context, req *mcpsdk.CallToolRequest, in StopWorkspaceInput) (*mcpsdk.CallToolResult, StopWorkspaceOutput, error) {
			owner, _, err := s.caller(ctx, in.JWTPayload)
			if err != nil {
				return nil, StopWorkspaceOutput{}, err
			}
			w, err := s.kube.StopWorkspace(ctx, in.Namespace, in.ID, owner)
			if err != nil {
				return nil, StopWorkspaceOutput{}, err
			}
			return text("Stopped workspace %s (Pod: %s)", w.ID, w.PodName), StopWorkspaceOutput{ID: w.ID, Status: "terminating"}, nil
		}),
	}
}

// notifyProgress sends a progress notification when the client asked for
// them (by giving a progress token).
func notifyProgress(ctx context.Context, req *mcpsdk.CallToolRequest, progress float64, message string) {
	token := req.Params.GetProgressToken()
	if token == nil || req.Session == nil {
		return
	}
	_ = req.Session.NotifyProgress(ctx, &mcpsdk.ProgressNotificationParams{ProgressToken: token, Progress: progress, Total: 4, Message: message})
}
