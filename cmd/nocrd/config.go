package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/nocrd/nocrd/internal/auth"
	"github.com/nocrd/nocrd/k8s"
	"github.com/nocrd/nocrd/mcp"
	"github.com/nocrd/nocrd/proxy"
	policies "github.com/nocrd/nocrd/wasm-policies"
)

// serveConfig is the process-level configuration: transports and logging.
type serveConfig struct {
	Transport string `env:"TRANSPORT" envDefault:"http"`
	Host      string `env:"HOST"`
	Port      int    `env:"PORT" envDefault:"3000"`
	LogLevel  string `env:"LOG_LEVEL" envDefault:"info"`
	TLSCert   string `env:"TLS_CERT"`
	TLSKey    string `env:"TLS_KEY"`
	// Workers is how many processes serve the HTTP port (see workers.go).
	Workers int `env:"PROXY_WORKERS" envDefault:"1"`
	// ClientTimeout bounds how long a client connection may take to send
	// a request head (from its first byte, from the connection's start
	// and from the end of the previous request, so also how long it may
	// sit idle); request bodies and streams are not bounded by it.
	ClientTimeout time.Duration `env:"CLIENT_TIMEOUT" envDefault:"90s"`
	// ClientBodyTimeout bounds how long a client may stay silent while it
	// sends a request body, as nginx's client_body_timeout (whose default
	// it takes); 0 leaves bodies unbounded. A body that keeps coming is
	// never cut.
	ClientBodyTimeout time.Duration `env:"CLIENT_BODY_TIMEOUT" envDefault:"60s"`
	// ClientSendTimeout bounds how long a write to a client may wait for
	// it to read, as nginx's send_timeout (whose default it takes); 0
	// leaves writes unbounded. A client that keeps reading is never cut.
	ClientSendTimeout time.Duration `env:"CLIENT_SEND_TIMEOUT" envDefault:"60s"`
	// ShutdownTimeout bounds how long, once told to stop, nocrd waits for
	// the requests in flight to finish (event streams and upgraded
	// connections end at once), as nginx's worker_shutdown_timeout does.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"5s"`
}

// maxWorkers bounds PROXY_WORKERS.
const maxWorkers = 64

func (c serveConfig) Validate() error {
	if !slices.Contains([]string{"http", "stdio", "both"}, c.Transport) {
		return fmt.Errorf("--transport/TRANSPORT: must be http, stdio or both, got %q", c.Transport)
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("--port/PORT: must be a port between 0 and 65535, got %d", c.Port)
	}
	if _, ok := logLevels[c.LogLevel]; !ok {
		return fmt.Errorf("--log-level/LOG_LEVEL: must be debug, info, warning, error or fatal, got %q", c.LogLevel)
	}
	if c.Workers < 1 || c.Workers > maxWorkers {
		return fmt.Errorf("--proxy-workers/PROXY_WORKERS: must be between 1 and %d, got %d", maxWorkers, c.Workers)
	}
	if c.Workers > 1 && c.Transport == "stdio" {
		return errors.New("--proxy-workers/PROXY_WORKERS: worker processes serve HTTP; with --transport stdio leave it at 1")
	}
	if c.Workers > 1 && !workersSupported {
		return errors.New("--proxy-workers/PROXY_WORKERS: worker processes need Linux (SO_REUSEPORT); leave it at 1")
	}
	if c.ClientTimeout <= 0 {
		return fmt.Errorf("--client-timeout/CLIENT_TIMEOUT: must be positive, got %s", c.ClientTimeout)
	}
	if c.ClientBodyTimeout < 0 {
		return fmt.Errorf("--client-body-timeout/CLIENT_BODY_TIMEOUT: must not be negative (0 leaves bodies unbounded), got %s", c.ClientBodyTimeout)
	}
	if c.ClientSendTimeout < 0 {
		return fmt.Errorf("--client-send-timeout/CLIENT_SEND_TIMEOUT: must not be negative (0 leaves writes unbounded), got %s", c.ClientSendTimeout)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("--shutdown-timeout/SHUTDOWN_TIMEOUT: must be positive, got %s", c.ShutdownTimeout)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert/TLS_CERT and --tls-key/TLS_KEY: give both or neither")
	}
	for _, f := range []struct{ name, path string }{{"--tls-cert/TLS_CERT", c.TLSCert}, {"--tls-key/TLS_KEY", c.TLSKey}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				return fmt.Errorf("%s: %w", f.name, err)
			}
		}
	}
	return nil
}

var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo, "warning": slog.LevelWarn,
	"warn": slog.LevelWarn, "error": slog.LevelError, "fatal": slog.LevelError + 4,
}

// config is everything nocrd reads from flags and the environment.
type config struct {
	Serve  serveConfig
	Kube   k8s.Config
	MCP    mcp.Config
	Auth   auth.Config
	Proxy  proxy.Config
	Policy policies.Config

	showVersion bool

	// What the process was started with, for proxy workers (workers.go).
	args    []string
	environ []string
	stderr  io.Writer
}

// envAliases are no-crd's alternative variable names: the alias is used
// when the primary name is unset.
var envAliases = map[string]string{
	"CORS_ALLOWED_ORIGIN":  "CORS_ORIGIN",
	"CORS_ALLOWED_METHODS": "CORS_METHODS",
	"CORS_ALLOWED_HEADERS": "CORS_HEADERS",
}

// usageError is a bad flag or variable: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// option documents one setting for --help.
type option struct {
	flags string
	env   string
	def   string
	usage string
}

// parseConfig reads the environment, then the flags, which win over their
// variables, and validates the result. --help is flag.ErrHelp.
func parseConfig(args []string, environ []string, helpOut io.Writer) (*config, error) {
	vars := env.ToMap(environ)
	for primary, alias := range envAliases {
		if _, ok := vars[primary]; !ok {
			if v, ok := vars[alias]; ok {
				vars[primary] = v
			}
		}
	}
	cfg := &config{}
	var envErrs []env.ParseError
	for _, target := range []any{&cfg.Serve, &cfg.Kube, &cfg.MCP, &cfg.Auth, &cfg.Proxy, &cfg.Policy} {
		if err := env.ParseWithOptions(target, env.Options{Environment: vars}); err != nil {
			var agg env.AggregateError
			if !errors.As(err, &agg) {
				return nil, usageError{fmt.Errorf("environment: %w", err)}
			}
			for _, e := range agg.Errors {
				var pe env.ParseError
				if !errors.As(e, &pe) {
					return nil, usageError{fmt.Errorf("environment: %w", e)}
				}
				pe.Name = envKey(target, pe.Name)
				envErrs = append(envErrs, pe)
			}
		}
	}

	fs := flag.NewFlagSet("nocrd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var opts []option
	str := func(p *string, env, usage string, names ...string) {
		for _, n := range names {
			fs.StringVar(p, n, *p, usage)
		}
		opts = append(opts, option{flagNames(names), env, *p, usage})
	}
	boolean := func(p *bool, env, usage string, names ...string) {
		for _, n := range names {
			fs.BoolVar(p, n, *p, usage)
		}
		opts = append(opts, option{flagNames(names), env, strconv.FormatBool(*p), usage})
	}
	integer := func(p *int, env, usage string, names ...string) {
		for _, n := range names {
			fs.IntVar(p, n, *p, usage)
		}
		opts = append(opts, option{flagNames(names), env, strconv.Itoa(*p), usage})
	}
	envOnly := func(env, def, usage string) { opts = append(opts, option{"-", env, def, usage}) }

	str(&cfg.Serve.Transport, "TRANSPORT", "transport: http, stdio or both", "transport", "t")
	str((*string)(&cfg.Kube.Mode), "MODE", "access scope: cluster or namespaced (locks every operation to --namespace)", "mode", "m")
	str(&cfg.Kube.Namespace, "NAMESPACE", "default namespace (the only one in namespaced mode)", "namespace", "n")
	integer(&cfg.Serve.Port, "PORT", "HTTP port", "port", "p")
	str(&cfg.Serve.Host, "HOST", "HTTP listen address (empty: all interfaces)", "host")
	str(&cfg.Serve.LogLevel, "LOG_LEVEL", "log level: debug, info, warning, error or fatal", "log-level", "l")
	str(&cfg.Serve.TLSCert, "TLS_CERT", "TLS certificate file; with --tls-key serves HTTPS", "tls-cert")
	str(&cfg.Serve.TLSKey, "TLS_KEY", "TLS private key file", "tls-key")
	integer(&cfg.Serve.Workers, "PROXY_WORKERS", "processes that serve the HTTP port, like nginx's worker_processes (1: this process)", "proxy-workers")
	boolean(&cfg.MCP.DisablePermissionChecks, "DISABLE_PERMISSION_CHECKS", "register every tool without RBAC checks", "disable-permission-checks")
	str(&cfg.MCP.CORSOrigin, "CORS_ALLOWED_ORIGIN, CORS_ORIGIN", "CORS allowed origin(s), comma-separated, or *", "cors-origin")
	str(&cfg.MCP.CORSMethods, "CORS_ALLOWED_METHODS, CORS_METHODS", "CORS allowed methods", "cors-methods")
	str(&cfg.MCP.CORSHeaders, "CORS_ALLOWED_HEADERS, CORS_HEADERS", "CORS allowed headers", "cors-headers")
	str(&cfg.MCP.BaseURL, "BASE_URL", "path prefix when served behind a reverse proxy, e.g. /gateway/no-crd", "base-url")
	str(&cfg.Auth.JWTSecret, "JWT_SECRET", "HMAC-SHA256 secret for token verification", "jwt-secret")
	str(&cfg.Auth.JWTPublicKey, "JWT_PUBLIC_KEY", "PEM public key (RSA, ECDSA, Ed25519) for token verification", "jwt-public-key")
	str(&cfg.Auth.JWKSURI, "JWKS_URI", "JWKS endpoint for token verification keys", "jwks-uri")
	str(&cfg.Auth.Issuer, "AUTH_ISSUER", "authorization server (token issuer) URL", "auth-issuer")
	str(&cfg.Auth.Audience, "AUTH_AUDIENCE", "audience tokens must carry (aud), when set", "auth-audience")
	str(&cfg.Auth.Scopes, "AUTH_SCOPES", "scopes advertised in /.well-known/oauth-protected-resource", "auth-scopes")
	integer(&cfg.Proxy.DefaultWorkspacePort, "DEFAULT_WORKSPACE_PORT", "workspace pod port traffic is proxied to", "default-workspace-port")
	integer(&cfg.Proxy.RouteCacheSize, "ROUTE_CACHE_SIZE", "workspace ids kept in the route cache", "route-cache-size")
	fs.DurationVar(&cfg.Proxy.UpstreamTimeout, "proxy-upstream-timeout", cfg.Proxy.UpstreamTimeout, "")
	opts = append(opts, option{"--proxy-upstream-timeout", "PROXY_UPSTREAM_TIMEOUT", cfg.Proxy.UpstreamTimeout.String(), "how long a workspace may stay silent before 504 (or the stream ends)"})
	boolean(&cfg.Proxy.PassAuthorization, "PROXY_PASS_AUTHORIZATION", "give workspaces the caller's verified token as an Authorization header (also when it came in the query or the cookie)", "proxy-pass-authorization")
	str(&cfg.Proxy.SubjectHeader, "PROXY_SUBJECT_HEADER", "header that carries the verified subject to workspaces (e.g. X-Forwarded-User)", "proxy-subject-header")
	boolean(&cfg.Proxy.KeepPrefix, "PROXY_KEEP_PREFIX", "forward the /route/<id> prefix as part of the path", "proxy-keep-prefix")
	str(&cfg.Proxy.TrustedProxies, "PROXY_TRUSTED_PROXIES", "CIDRs or IPs of the proxies in front of nocrd whose X-Forwarded-Proto and -Host go on to workspaces", "proxy-trusted-proxies")
	boolean(&cfg.Proxy.TokenCookie, "PROXY_TOKEN_COOKIE", "with auth, redirect a browser's ?token= navigation and keep the token in a cookie for that workspace", "proxy-token-cookie")
	list := func(p *[]string, env, usage, name string) {
		fs.Func(name, usage, func(v string) error {
			*p = splitList(v)
			return nil
		})
		opts = append(opts, option{"--" + name, env, strings.Join(*p, ","), usage})
	}
	duration := func(p *time.Duration, env, usage, name string) {
		fs.DurationVar(p, name, *p, usage)
		opts = append(opts, option{"--" + name, env, p.String(), usage})
	}
	duration(&cfg.Serve.ClientTimeout, "CLIENT_TIMEOUT", "how long a client connection may take to send a request head, and may sit idle between requests", "client-timeout")
	duration(&cfg.Serve.ClientBodyTimeout, "CLIENT_BODY_TIMEOUT", "how long a client may stay silent while it sends a request body, before 408 (0: no bound)", "client-body-timeout")
	duration(&cfg.Serve.ClientSendTimeout, "CLIENT_SEND_TIMEOUT", "how long a write to a client may wait for it to read, before the connection is closed (0: no bound)", "client-send-timeout")
	duration(&cfg.Serve.ShutdownTimeout, "SHUTDOWN_TIMEOUT", "how long, once told to stop, nocrd waits for the requests in flight to finish", "shutdown-timeout")
	list(&cfg.Policy.Route, "POLICY_ROUTE", "Wasm route policies (http-wasm modules), comma-separated, run in order on every /route/ request", "policy-route")
	list(&cfg.Policy.Spawn, "POLICY_SPAWN", "Wasm admission policies, comma-separated, run in order before a workspace or pod is created", "policy-spawn")
	duration(&cfg.Policy.RouteTimeout, "POLICY_ROUTE_TIMEOUT", "deadline of one route policy decision (past it: denied)", "policy-route-timeout")
	duration(&cfg.Policy.SpawnTimeout, "POLICY_SPAWN_TIMEOUT", "deadline of one admission policy decision (past it: denied)", "policy-spawn-timeout")
	envOnly("POLICY_MEMORY_LIMIT_MB", strconv.Itoa(cfg.Policy.MemoryLimitMB), "memory limit of each policy instance")
	envOnly("POLICY_CACHE_DIR", "<user cache>/nocrd/wasm", "directory that keeps compiled policies between runs")
	envOnly("POLICY_WATCH_INTERVAL", cfg.Policy.Watch.String(), "how often policy files are checked for changes (0: reload on SIGHUP only)")
	envOnly("POLICY_CONFIG_<NAME>", "", "configuration of the policy in <name>.wasm (name upper-cased, '-' and '.' as '_'), read by the guest with get_config")
	fs.DurationVar(&cfg.Kube.ReaperInterval, "reaper-interval", cfg.Kube.ReaperInterval, "")
	opts = append(opts, option{"--reaper-interval", "REAPER_INTERVAL", cfg.Kube.ReaperInterval.String(), "how often workspaces past their nogoo9/ttl are deleted (0: never)"})
	envOnly("UI_ENABLED", strconv.FormatBool(cfg.MCP.UIEnabled), "serve the Pod Manager UI")
	envOnly("AUTH_ENABLED", strconv.FormatBool(cfg.Auth.Enabled), "restrict workspace operations to verified JWT identities")
	envOnly("AUTH_SUB_JSONPATH", cfg.Auth.SubJSONPath, "JSONPath of the user identity in the token claims")
	envOnly("REGISTRY_URL", cfg.MCP.RegistryURL, "Docker Registry v2 URL for list_registry_images")
	boolean(&cfg.MCP.ResourceTools, "RESOURCE_TOOLS", "offer the generic resource tools resource_list, resource_get and resource_apply (any resource type but Secrets, ServiceAccounts and RBAC)", "resource-tools")
	boolean(&cfg.MCP.ResourceToolsCallerToken, "RESOURCE_TOOLS_CALLER_TOKEN", "the resource tools call Kubernetes with each request's own bearer token, not nocrd's identity (required with AUTH_ENABLED)", "resource-tools-caller-token")
	str(&cfg.Kube.Kubeconfig, "KUBECONFIG", "kubeconfig file(s), separated like PATH (default: in-cluster, then ~/.kube/config)", "kubeconfig")
	str(&cfg.Kube.Context, "-", "kubeconfig context to use", "context")
	var runtime string
	fs.StringVar(&runtime, "runtime", "", "accepted for no-crd compatibility and ignored")
	boolean(&cfg.showVersion, "-", "print the version and exit", "version")

	if len(envErrs) > 0 {
		pe := envErrs[0] // report the first bad variable, as for flags
		name := pe.Name
		for _, o := range opts {
			if slices.Contains(strings.Split(o.env, ", "), pe.Name) && o.flags != "-" {
				name = o.flags[strings.LastIndex(o.flags, " ")+1:] + "/" + pe.Name
			}
		}
		return nil, usageError{fmt.Errorf("%s: invalid value %q: want %s", name, vars[pe.Name], pe.Type)}
	}
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(helpOut, opts)
			return nil, err
		}
		return nil, usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if cfg.showVersion {
		return cfg, nil
	}
	cfg.Policy.Route, cfg.Policy.Spawn = splitList(strings.Join(cfg.Policy.Route, ",")), splitList(strings.Join(cfg.Policy.Spawn, ","))
	cfg.Policy.Configs = map[string]string{}
	for _, p := range append(append([]string(nil), cfg.Policy.Route...), cfg.Policy.Spawn...) {
		if v, ok := vars[policies.ConfigVar(policies.ModuleName(p))]; ok {
			cfg.Policy.Configs[policies.ModuleName(p)] = v
		}
	}
	for _, v := range []interface{ Validate() error }{cfg.Serve, cfg.Kube, cfg.MCP, cfg.Auth, cfg.Proxy, cfg.Policy} {
		if err := v.Validate(); err != nil {
			return nil, usageError{err}
		}
	}
	if cfg.MCP.ResourceTools && cfg.Auth.Enabled && !cfg.MCP.ResourceToolsCallerToken {
		// With nocrd's own identity the generic tools cannot keep a caller
		// to their own workspaces (k8s.CallerError).
		return nil, usageError{errors.New("--resource-tools/RESOURCE_TOOLS: with AUTH_ENABLED the generic resource tools must call Kubernetes with each caller's own token (--resource-tools-caller-token/RESOURCE_TOOLS_CALLER_TOKEN), not nocrd's identity")}
	}
	return cfg, nil
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func flagNames(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		if len(n) == 1 {
			out[i] = "-" + n
		} else {
			out[i] = "--" + n
		}
	}
	slices.Reverse(out) // short form first, as in no-crd's table
	return strings.Join(out, ", ")
}

func printUsage(w io.Writer, opts []option) {
	fmt.Fprintln(w, "nocrd: MCP server and edge proxy for agent workspaces on Kubernetes, without CRDs.")
	fmt.Fprintln(w, "\nUsage: nocrd [flags]                serve\n       nocrd demo-setup [flags]     create the namespace and an example template\n"+
		"       nocrd test-policy [flags]    run the test_policy input (JSON) on stdin against the configured policies;\n"+
		"                                    exit 0 allowed, 1 denied, 2 bad input\n\nA flag wins over its environment variable.")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nFLAG\tENVIRONMENT\tDEFAULT\tDESCRIPTION")
	for _, o := range opts {
		def := o.def
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.flags, o.env, def, o.usage)
	}
	tw.Flush()
}

// envKey returns the variable that sets the named field of the struct
// target points to.
func envKey(target any, field string) string {
	if f, ok := reflect.TypeOf(target).Elem().FieldByName(field); ok {
		if tag, _, _ := strings.Cut(f.Tag.Get("env"), ","); tag != "" {
			return tag
		}
	}
	return field
}
