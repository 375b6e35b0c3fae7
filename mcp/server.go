// Package mcp is nocrd's Model Context Protocol server. It exposes no-crd's
// tools and resources, with the same names, inputs and outputs, over stdio,
// streamable HTTP and the legacy SSE transport, and registers only the tools
// that the server's Kubernetes identity is allowed to use (asked again by
// check_permissions, which registers and withdraws tools to match).
//
// Tools are grouped one file per area (tools_util.go, tools_pods.go,
// tools_templates.go, tools_registry.go, tools_resources.go); every Kubernetes operation goes
// through the k8s package, which enforces namespace scope and validation.
package mcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nocrd/nocrd/internal/auth"
	"github.com/nocrd/nocrd/k8s"
)

// Config configures the MCP server.
type Config struct {
	// BaseURL is the path prefix the HTTP endpoints are served under.
	BaseURL string `env:"BASE_URL"`
	// DisablePermissionChecks registers every tool without asking the API
	// server what the identity may do.
	DisablePermissionChecks bool   `env:"DISABLE_PERMISSION_CHECKS" envDefault:"false"`
	CORSOrigin              string `env:"CORS_ALLOWED_ORIGIN" envDefault:"*"`
	CORSMethods             string `env:"CORS_ALLOWED_METHODS" envDefault:"GET, POST, OPTIONS"`
	CORSHeaders             string `env:"CORS_ALLOWED_HEADERS" envDefault:"Content-Type, Authorization, mcp-protocol-version"`
	// UIEnabled serves the Pod Manager UI.
	UIEnabled bool `env:"UI_ENABLED" envDefault:"true"`
	// RegistryURL is the Docker Registry v2 endpoint list_registry_images queries.
	RegistryURL string `env:"REGISTRY_URL"`
	// ResourceTools offers k-mcp's generic resource tools (resource_list,
	// resource_get, resource_apply; see tools_resources.go).
	ResourceTools bool `env:"RESOURCE_TOOLS" envDefault:"false"`
	// ResourceToolsCallerToken makes the resource tools call Kubernetes
	// with each request's own bearer token instead of the server's
	// identity, as k-mcp does.
	ResourceToolsCallerToken bool `env:"RESOURCE_TOOLS_CALLER_TOKEN" envDefault:"false"`
}

// Validate reports the first invalid field, naming its flag and variable.
func (c Config) Validate() error {
	if c.BaseURL != "" && (!strings.HasPrefix(c.BaseURL, "/") || strings.ContainsAny(c.BaseURL, "?#")) {
		return fmt.Errorf("--base-url/BASE_URL: must be a path starting with /, got %q", c.BaseURL)
	}
	if c.RegistryURL != "" {
		u, err := url.Parse(c.RegistryURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("REGISTRY_URL: must be an http or https URL, got %q", c.RegistryURL)
		}
	}
	if c.ResourceToolsCallerToken && !c.ResourceTools {
		return fmt.Errorf("--resource-tools-caller-token/RESOURCE_TOOLS_CALLER_TOKEN: applies to the resource tools; set --resource-tools/RESOURCE_TOOLS too")
	}
	if strings.TrimSpace(c.CORSOrigin) == "" {
		return fmt.Errorf("--cors-origin/CORS_ALLOWED_ORIGIN: must not be empty (use * to allow any origin)")
	}
	return nil
}

// BasePath returns BaseURL without a trailing slash ("" for the root).
func (c Config) BasePath() string { return strings.TrimRight(c.BaseURL, "/") }

// Options are the server's collaborators.
type Options struct {
	// Version is reported to clients as the server implementation version.
	Version string
	Logger  *slog.Logger
	// Identity says whether workspace tools require a verified identity and
	// where a jwtPayload's subject is.
	Identity auth.Config
	// Verifier checks bearer tokens on the HTTP endpoints; required when
	// Identity.Enabled.
	Verifier Verifier
	// Policies, when set, answers test_policy.
	Policies PolicyTester
}

// Verifier checks a bearer token and says whom it identifies.
type Verifier interface {
	Verify(ctx context.Context, token string) (*auth.Identity, error)
}

// Server is nocrd's MCP server.
type Server struct {
	cfg  Config
	kube *k8s.Client
	log  *slog.Logger
	sdk  *mcpsdk.Server
	// identity is how workspace tools find their caller.
	identity auth.Config
	verifier Verifier
	policies PolicyTester
	// registered is which tools are registered on sdk (see syncTools).
	toolsMu    sync.Mutex
	registered map[string]bool
}

// toolSpec is a tool with the Kubernetes accesses it needs and a function
// that registers it on an SDK server.
type toolSpec struct {
	tool  *mcpsdk.Tool
	needs []k8s.Access
	add   func(*mcpsdk.Server)
}

func newTool[In, Out any](t *mcpsdk.Tool, needs []k8s.Access, h mcpsdk.ToolHandlerFor[In, Out]) toolSpec {
	return toolSpec{tool: t, needs: needs, add: func(s *mcpsdk.Server) { mcpsdk.AddTool(s, t, h) }}
}

// New builds the server: it checks the identity's permissions (unless
// disabled) and registers the tools that are allowed.
func New(ctx context.Context, cfg Config, kube *k8s.Client, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if opts.Identity.SubJSONPath == "" {
		opts.Identity.SubJSONPath = "$.sub"
	}
	if opts.Identity.Enabled && opts.Verifier == nil {
		return nil, errors.New("AUTH_ENABLED needs a token verifier")
	}
	s := &Server{cfg: cfg, kube: kube, log: opts.Logger, identity: opts.Identity, verifier: opts.Verifier, policies: opts.Policies}
	s.sdk = mcpsdk.NewServer(&mcpsdk.Implementation{Name: "nocrd", Title: "nocrd", Version: opts.Version}, &mcpsdk.ServerOptions{
		Instructions: "nocrd manages pods, pod templates (ConfigMaps labelled nogoo9/pod-template=true) and agent workspaces on Kubernetes without CRDs.",
		Logger:       opts.Logger,
		Capabilities: &mcpsdk.ServerCapabilities{},
	})

	if s.identity.Enabled {
		s.sdk.AddReceivingMiddleware(actForCaller)
	}

	specs := s.toolSpecs()
	report, err := s.checkPermissions(ctx, specs, false)
	if err != nil {
		return nil, err
	}
	s.registered = map[string]bool{}
	for _, t := range specs {
		if slices.Contains(report.EnabledTools, t.tool.Name) {
			t.add(s.sdk)
			s.registered[t.tool.Name] = true
		}
	}
	s.log.Info("mcp tools registered", "enabled", len(report.EnabledTools), "disabled", report.DisabledTools)
	s.addResources()
	return s, nil
}

// actForCaller makes every request with a verified token act for its
// subject (k8s.WithCaller), so that the pod tools, like the workspace
// tools, cannot touch another owner's workspace: the Kubernetes layer
// enforces it for every front end that says who it acts for.
func actForCaller(next mcpsdk.MethodHandler) mcpsdk.MethodHandler {
	return func(ctx context.Context, method string, req mcpsdk.Request) (mcpsdk.Result, error) {
		if ti := tokenInfo(ctx, req.GetExtra()); ti != nil && ti.UserID != "" {
			claims, _ := ti.Extra[claimsKey].(map[string]any)
			ctx = k8s.WithCaller(ctx, k8s.Caller{Subject: ti.UserID, Claims: claims})
		}
		return next(ctx, method, req)
	}
}

// toolSpecs lists every tool nocrd offers.
func (s *Server) toolSpecs() []toolSpec {
	var specs []toolSpec
	specs = append(specs, s.utilTools()...)
	specs = append(specs, s.podTools()...)
	specs = append(specs, s.registryTools()...)
	specs = append(specs, s.templateTools()...)
	specs = append(specs, s.workspaceTools()...)
	specs = append(specs, s.policyTools()...)
	specs = append(specs, s.resourceTools()...)
	return specs
}

// SDK returns the underlying go-sdk server.
func (s *Server) SDK() *mcpsdk.Server { return s.sdk }

// Close ends every open MCP session (stdio, streamable HTTP and SSE).
func (s *Server) Close() error {
	var errs []error
	for ss := range s.sdk.Sessions() {
		errs = append(errs, ss.Close())
	}
	return errors.Join(errs...)
}

// RunStdio serves one session over standard input and output until the
// client disconnects or ctx ends. Requests already read when stdin ends
// are answered first (see stdioDrain).
func (s *Server) RunStdio(ctx context.Context) error {
	return s.runIO(ctx, os.Stdin, os.Stdout)
}

// runIO serves one session over in and out, as RunStdio does.
func (s *Server) runIO(ctx context.Context, in io.ReadCloser, out io.WriteCloser) error {
	d := newStdioDrain(ctx, in, nopCloser{out})
	return s.sdk.Run(ctx, &mcpsdk.IOTransport{Reader: d.reader(), Writer: d.writer()})
}

// nopCloser keeps standard output open when the session ends, as go-sdk's
// own stdio transport does (go-sdk#548): logs and a last answer may follow.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// text returns a result whose content is one text block.
func text(format string, args ...any) *mcpsdk.CallToolResult {
	return &mcpsdk.CallToolResult{Content: []mcpsdk.Content{&mcpsdk.TextContent{Text: fmt.Sprintf(format, args...)}}}
}

// Annotation presets. Every tool states all four hints honestly.
func readOnly(title string) *mcpsdk.ToolAnnotations {
	return &mcpsdk.ToolAnnotations{Title: title, ReadOnlyHint: true, IdempotentHint: true, DestructiveHint: ptr(false), OpenWorldHint: ptr(false)}
}

func additive(title string) *mcpsdk.ToolAnnotations {
	return &mcpsdk.ToolAnnotations{Title: title, DestructiveHint: ptr(false), OpenWorldHint: ptr(false)}
}

func destructive(title string, idempotent bool) *mcpsdk.ToolAnnotations {
	return &mcpsdk.ToolAnnotations{Title: title, DestructiveHint: ptr(true), IdempotentHint: idempotent, OpenWorldHint: ptr(false)}
}

func ptr[T any](v T) *T { return &v }
