package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/nocrd/nocrd/k8s"
	"github.com/nocrd/nocrd/mcp"
	"github.com/nocrd/nocrd/proxy"
	policies "github.com/nocrd/nocrd/wasm-policies"
)

// policyTester answers test_policy and `nocrd test-policy`: it runs a
// request through a hook's chain the way the proxy and the spawn path do,
// with Module.Try, so nothing is counted, created or forwarded.
type policyTester struct {
	set *policies.Set
	// namespace is the review's default namespace.
	namespace string
}

func (p policyTester) TestPolicy(_ context.Context, in mcp.TestPolicyInput) (mcp.TestPolicyOutput, error) {
	if err := in.Validate(); err != nil {
		return mcp.TestPolicyOutput{}, err
	}
	chain := p.set.Chain(policies.HookRoute)
	if in.Hook == mcp.HookSpawn {
		chain = p.set.Chain(policies.HookSpawn)
	}
	out := mcp.TestPolicyOutput{Hook: in.Hook, Decision: "allow", Policies: []string{}}
	for _, m := range chain.Modules() {
		out.Policies = append(out.Policies, m.Name)
	}
	if in.Hook == mcp.HookSpawn {
		return p.spawn(in, chain, out)
	}
	return p.route(in, chain, out)
}

// route runs the request through the same adapter the proxy uses, so the
// guest sees the reserved headers exactly as it would behind the proxy:
// virtual, read-only, and the subject and claims only when there are some.
func (p policyTester) route(in mcp.TestPolicyInput, chain *policies.Chain, out mcp.TestPolicyOutput) (mcp.TestPolicyOutput, error) {
	var req fasthttp.Request
	req.Header.SetMethod(or(in.Method, http.MethodGet))
	req.SetRequestURI(or(in.Path, "/"))
	for k, v := range in.Headers {
		req.Header.Add(k, v)
	}
	info := proxy.RouteInfo{
		Client:    &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)},
		Subject:   []byte(in.Subject),
		Workspace: []byte(or(in.Workspace, "test")),
		Owner:     or(in.Owner, or(in.Subject, k8s.Anonymous)),
	}
	if len(in.Claims) > 0 {
		claims, err := json.Marshal(in.Claims)
		if err != nil {
			return out, fmt.Errorf("claims: %w", err)
		}
		info.Claims = claims
	}
	fr := fastRequest{req: proxy.NewUpstream(&req), info: info}
	for _, m := range chain.Modules() {
		var resp policies.Response
		next, err := m.Try(&fr, &resp)
		var fe *policies.FaultError
		switch {
		case errors.As(err, &fe):
			out.Decision, out.Policy, out.Status, out.Reason = "fault", m.Name, http.StatusForbidden, fe.Reason+": "+fe.Err.Error()
			return out, nil
		case err != nil:
			return out, err
		case !next:
			out.Decision, out.Policy, out.Status, out.Reason = "deny", m.Name, resp.Status, string(resp.Body)
			return out, nil
		}
	}
	fwd := &mcp.TestPolicyRequest{Method: string(req.Header.Method()), Path: string(req.RequestURI()), Headers: map[string]string{}}
	for k, v := range req.Header.All() {
		if !proxy.IsReserved(k) { // the proxy strips them before forwarding
			fwd.Headers[string(k)] = string(v)
		}
	}
	out.Request = fwd
	return out, nil
}

func (p policyTester) spawn(in mcp.TestPolicyInput, chain *policies.Chain, out mcp.TestPolicyOutput) (mcp.TestPolicyOutput, error) {
	raw, err := json.Marshal(in.Review)
	if err != nil {
		return out, fmt.Errorf("review: %w", err)
	}
	var review k8s.AdmissionReview
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&review); err != nil {
		return out, fmt.Errorf("review: not an admission review: %w", err)
	}
	if review.Pod == nil {
		return out, errors.New("review: pod is required: the pod that would be created")
	}
	review.Operation = or(review.Operation, k8s.OperationSpawnWorkspace)
	review.Namespace = or(review.Namespace, p.namespace)
	review.Owner = or(review.Owner, or(in.Owner, or(in.Subject, k8s.Anonymous)))
	if review.Claims == nil {
		review.Claims = in.Claims
	}
	if review.Pod.Namespace == "" {
		review.Pod.Namespace = review.Namespace
	}
	pod, r, err := admit(chain, &review, (*policies.Module).Try)
	if err != nil {
		return out, err
	}
	if r != nil {
		out.Decision, out.Policy, out.Status, out.Reason = "deny", r.policy, r.status, r.reason
		if r.fault != "" {
			out.Decision = "fault"
		}
		return out, nil
	}
	js, err := json.Marshal(pod)
	if err == nil {
		err = json.Unmarshal(js, &out.Pod)
	}
	return out, err
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// testPolicyCommand is `nocrd test-policy`: it loads the configured
// policies, reads one test_policy input as JSON from stdin, prints the
// decision as JSON and exits 0 when the request is allowed, 1 when it is
// denied (or a policy failed deciding) and 2 on bad input, a module that
// does not load included.
func testPolicyCommand(ctx context.Context, cfg *config, stdin io.Reader, stdout, stderr io.Writer) int {
	if !cfg.Policy.Enabled() {
		fmt.Fprintln(stderr, "nocrd test-policy: no policy configured: set --policy-route/POLICY_ROUTE or --policy-spawn/POLICY_SPAWN")
		return 2
	}
	var in mcp.TestPolicyInput
	dec := json.NewDecoder(stdin)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		fmt.Fprintf(stderr, "nocrd test-policy: stdin: not a test_policy input (JSON with hook, and method/path/headers or review): %v\n", err)
		return 2
	}
	if err := in.Validate(); err != nil {
		fmt.Fprintf(stderr, "nocrd test-policy: %v\n", err)
		return 2
	}
	defaultPolicyCache(cfg)
	set, err := policies.Open(ctx, cfg.Policy, nil, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		// A module that cannot be read or does not load is bad input too:
		// 1 would read as the policy's deny.
		fmt.Fprintf(stderr, "nocrd test-policy: %v\n", err)
		return 2
	}
	defer set.Close(context.Background())
	out, err := policyTester{set: set, namespace: cfg.Kube.Namespace}.TestPolicy(ctx, in)
	if err != nil {
		fmt.Fprintf(stderr, "nocrd test-policy: %v\n", err)
		return 2
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
	if out.Decision != "allow" {
		fmt.Fprintf(stderr, "nocrd test-policy: %s\n", strings.SplitN(mcp.FormatPolicyDecision(out), "\n", 2)[0])
		return 1
	}
	return 0
}
