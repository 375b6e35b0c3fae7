package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nocrd/nocrd/k8s"
)

// PolicyTester runs a request against the loaded Wasm policies and reports
// what they decide, with no side effect: nothing is created, forwarded or
// counted. cmd wires the policy host in; without one, test_policy says no
// policy is loaded.
type PolicyTester interface {
	TestPolicy(ctx context.Context, in TestPolicyInput) (TestPolicyOutput, error)
}

// Policy hooks test_policy can run.
const (
	HookRoute = "route"
	HookSpawn = "spawn"
)

// TestPolicyInput is test_policy's input, and the JSON that
// `nocrd test-policy` reads.
type TestPolicyInput struct {
	Hook      string            `json:"hook" jsonschema:"which policies to run: route (POLICY_ROUTE) or spawn (POLICY_SPAWN)"`
	Method    string            `json:"method,omitempty" jsonschema:"route: the request method (default GET)"`
	Path      string            `json:"path,omitempty" jsonschema:"route: the path and query inside the workspace, as the policy sees it (default /)"`
	Headers   map[string]string `json:"headers,omitempty" jsonschema:"route: request headers; X-Nocrd-* ones are set by nocrd and cannot be given"`
	Workspace string            `json:"workspace,omitempty" jsonschema:"route: the workspace id (default test)"`
	Owner     string            `json:"owner,omitempty" jsonschema:"the workspace owner (route, default the subject) or the review's owner (spawn, default the subject)"`
	Subject   string            `json:"subject,omitempty" jsonschema:"the verified subject to present (default the caller's own; none without authentication)"`
	Claims    map[string]any    `json:"claims,omitempty" jsonschema:"the token claims to present (default the caller's own)"`
	Review    map[string]any    `json:"review,omitempty" jsonschema:"spawn: the admission review the policies get (operation, namespace, owner, claims, template, templateAnnotations, pod, workspaces); operation, namespace, owner and claims default to spawn_workspace, the server's namespace, the subject and the claims"`
}

// TestPolicyOutput is what the policies decided.
type TestPolicyOutput struct {
	Hook string `json:"hook" jsonschema:"the hook that was run"`
	// Decision is allow, deny or fault.
	Decision string   `json:"decision" jsonschema:"allow (every policy let it through), deny (a policy answered instead) or fault (a policy failed, which nocrd treats as a deny)"`
	Policies []string `json:"policies" jsonschema:"the policies run, in order"`
	Policy   string   `json:"policy,omitempty" jsonschema:"the policy that denied or failed"`
	Status   int      `json:"status,omitempty" jsonschema:"the status the client would get on a deny or fault"`
	Reason   string   `json:"reason,omitempty" jsonschema:"why: the policy's answer body, or what failed (trap, timeout, malformed, busy, unavailable)"`
	// Route: the request as the workspace would get it.
	Request *TestPolicyRequest `json:"request,omitempty" jsonschema:"route, allowed: the request as it would be forwarded, after the policies' changes"`
	// Spawn: the pod as it would be created.
	Pod map[string]any `json:"pod,omitempty" jsonschema:"spawn, allowed: the pod as it would be created, after the policies' patches"`
}

// TestPolicyRequest is a route request after the policies.
type TestPolicyRequest struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers,omitempty"`
}

// Validate names what is wrong with in.
func (in *TestPolicyInput) Validate() error {
	switch in.Hook {
	case HookRoute:
		if in.Review != nil {
			return fmt.Errorf("review: only the spawn hook takes a review")
		}
		if in.Path != "" && !strings.HasPrefix(in.Path, "/") {
			return fmt.Errorf("path: %q must start with /", in.Path)
		}
		if strings.ContainsAny(in.Method, " \t\r\n") {
			return fmt.Errorf("method: %q is not an HTTP method", in.Method)
		}
		for k, v := range in.Headers {
			if k == "" || strings.ContainsAny(k, " \t\r\n:") || strings.ContainsAny(v, "\r\n") {
				return fmt.Errorf("headers: %q is not a valid header", k)
			}
			if strings.HasPrefix(strings.ToLower(k), "x-nocrd-") {
				return fmt.Errorf("headers: %s is set by nocrd; give subject, claims, workspace or owner instead", k)
			}
		}
	case HookSpawn:
		if in.Review == nil {
			return fmt.Errorf("review: the spawn hook needs the admission review to decide on (at least its pod)")
		}
		if in.Method != "" || in.Path != "" || in.Headers != nil || in.Workspace != "" {
			return fmt.Errorf("method, path, headers and workspace are for the route hook; the spawn hook takes a review")
		}
	case "":
		return fmt.Errorf("hook: required, route or spawn")
	default:
		return fmt.Errorf("hook: %q is not route or spawn", in.Hook)
	}
	return nil
}

func (s *Server) policyTools() []toolSpec {
	return []toolSpec{
		newTool(&mcpsdk.Tool{
			Name: "test_policy",
			Description: "Runs a route request or a spawn admission review against the loaded Wasm policies (POLICY_ROUTE, POLICY_SPAWN) and returns their decision and reason, " +
				"with no side effect: nothing is created or forwarded. The subject and claims default to the caller's own.",
			Annotations: readOnly("Test policies"),
		}, nil, func(ctx context.Context, req *mcpsdk.CallToolRequest, in TestPolicyInput) (*mcpsdk.CallToolResult, TestPolicyOutput, error) {
			if err := in.Validate(); err != nil {
				return nil, TestPolicyOutput{}, err
			}
			if c, ok := k8s.CallerFrom(ctx); in.Subject == "" && ok {
				in.Subject = c.Subject
			}
			if in.Claims == nil {
				in.Claims = s.claims(ctx, nil)
			}
			if in.Hook == HookSpawn {
				if _, ok := in.Review["namespace"]; !ok {
					in.Review["namespace"] = s.kube.DefaultNamespace()
				}
			}
			if s.policies == nil {
				return text("No %s policy is loaded: the request would be allowed.", in.Hook), TestPolicyOutput{Hook: in.Hook, Decision: "allow", Policies: []string{}}, nil
			}
			out, err := s.policies.TestPolicy(ctx, in)
			if err != nil {
				return nil, TestPolicyOutput{}, err
			}
			return text("%s", FormatPolicyDecision(out)), out, nil
		}),
	}
}

// FormatPolicyDecision says a decision in one line, and the result.
func FormatPolicyDecision(out TestPolicyOutput) string {
	var b strings.Builder
	switch out.Decision {
	case "allow":
		fmt.Fprintf(&b, "allowed by %d %s polic%s (%s)", len(out.Policies), out.Hook, plural(len(out.Policies)), strings.Join(out.Policies, ", "))
	default:
		fmt.Fprintf(&b, "%s by %s: %d %s", map[string]string{"deny": "denied", "fault": "denied (the policy failed)"}[out.Decision], out.Policy, out.Status, out.Reason)
	}
	if js, err := json.MarshalIndent(out, "", "  "); err == nil {
		b.WriteString("\n")
		b.Write(js)
	}
	return b.String()
}

func plural(n int) string {
	if n == 1 {
		return "y"
	}
	return "ies"
}
