package main

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     []string
		check   func(*config) string
		wantErr string
	}{
		{name: "no-crd defaults", check: func(c *config) string {
			if c.Serve.Transport != "http" || c.Kube.Mode != "cluster" || c.Kube.Namespace != "nogoo9" || c.Serve.Port != 3000 ||
				c.Serve.LogLevel != "info" || c.MCP.CORSOrigin != "*" || c.MCP.CORSMethods != "GET, POST, OPTIONS" ||
				c.MCP.CORSHeaders != "Content-Type, Authorization, mcp-protocol-version" || !c.MCP.UIEnabled || c.Auth.Enabled ||
				c.Auth.SubJSONPath != "$.sub" || c.Proxy.DefaultWorkspacePort != 3000 || c.MCP.DisablePermissionChecks {
				return "unexpected defaults"
			}
			return ""
		}},
		{name: "environment", env: []string{"TRANSPORT=stdio", "MODE=namespaced", "NAMESPACE=team-a", "PORT=3050", "LOG_LEVEL=debug",
			"DISABLE_PERMISSION_CHECKS=true", "UI_ENABLED=false", "REGISTRY_URL=http://localhost:5001", "BASE_URL=/gateway/no-crd", "DEFAULT_WORKSPACE_PORT=8080"},
			check: func(c *config) string {
				if c.Serve.Transport != "stdio" || c.Kube.Mode != "namespaced" || c.Kube.Namespace != "team-a" || c.Serve.Port != 3050 ||
					c.Serve.LogLevel != "debug" || !c.MCP.DisablePermissionChecks || c.MCP.UIEnabled || c.MCP.RegistryURL != "http://localhost:5001" ||
					c.MCP.BaseURL != "/gateway/no-crd" || c.Proxy.DefaultWorkspacePort != 8080 {
					return "environment not applied"
				}
				return ""
			}},
		{name: "flags win over variables", args: []string{"--transport", "both", "-m", "namespaced", "-n", "flagged", "-p", "4000", "--log-level=error"},
			env: []string{"TRANSPORT=stdio", "MODE=cluster", "NAMESPACE=envns", "PORT=5000", "LOG_LEVEL=debug"},
			check: func(c *config) string {
				if c.Serve.Transport != "both" || c.Kube.Mode != "namespaced" || c.Kube.Namespace != "flagged" || c.Serve.Port != 4000 || c.Serve.LogLevel != "error" {
					return "flags did not win"
				}
				return ""
			}},
		{name: "short flags", args: []string{"-t", "stdio", "-l", "warning"}, check: func(c *config) string {
			if c.Serve.Transport != "stdio" || c.Serve.LogLevel != "warning" {
				return "short flags not applied"
			}
			return ""
		}},
		{name: "CORS aliases", env: []string{"CORS_ORIGIN=https://a.example", "CORS_METHODS=GET", "CORS_HEADERS=X-A"}, check: func(c *config) string {
			if c.MCP.CORSOrigin != "https://a.example" || c.MCP.CORSMethods != "GET" || c.MCP.CORSHeaders != "X-A" {
				return "aliases not applied"
			}
			return ""
		}},
		{name: "primary CORS variable wins over alias", env: []string{"CORS_ALLOWED_ORIGIN=https://p.example", "CORS_ORIGIN=https://a.example"}, check: func(c *config) string {
			if c.MCP.CORSOrigin != "https://p.example" {
				return "alias won"
			}
			return ""
		}},
		{name: "no-crd's --runtime is accepted", args: []string{"--runtime", "node"}, check: func(*config) string { return "" }},
		{name: "auth with a secret", env: []string{"AUTH_ENABLED=true", "JWT_SECRET=s3cret"}, check: func(c *config) string {
			if !c.Auth.Enabled || c.Auth.JWTSecret != "s3cret" {
				return "auth not applied"
			}
			return ""
		}},
		{name: "bad transport", args: []string{"--transport", "carrier-pigeon"}, wantErr: `--transport/TRANSPORT: must be http, stdio or both, got "carrier-pigeon"`},
		{name: "bad mode", env: []string{"MODE=galaxy"}, wantErr: "--mode/MODE"},
		{name: "bad namespace", args: []string{"-n", "Not_A_Namespace"}, wantErr: "--namespace/NAMESPACE"},
		{name: "port not a number", env: []string{"PORT=abc"}, wantErr: `--port/PORT: invalid value "abc"`},
		{name: "port flag not a number", args: []string{"--port", "abc"}, wantErr: "port"},
		{name: "port out of range", args: []string{"--port", "70000"}, wantErr: "--port/PORT: must be a port between 0 and 65535"},
		{name: "bad log level", args: []string{"-l", "loud"}, wantErr: "--log-level/LOG_LEVEL"},
		{name: "no proxy workers", env: []string{"PROXY_WORKERS=0"}, wantErr: "--proxy-workers/PROXY_WORKERS: must be between 1 and 64, got 0"},
		{name: "no client timeout", env: []string{"CLIENT_TIMEOUT=0s"}, wantErr: "--client-timeout/CLIENT_TIMEOUT: must be positive, got 0s"},
		{name: "negative client timeout", args: []string{"--client-timeout", "-1s"}, wantErr: "--client-timeout/CLIENT_TIMEOUT: must be positive, got -1s"},
		{name: "negative client body timeout", env: []string{"CLIENT_BODY_TIMEOUT=-1s"}, wantErr: "--client-body-timeout/CLIENT_BODY_TIMEOUT: must not be negative"},
		{name: "negative client send timeout", args: []string{"--client-send-timeout", "-1s"}, wantErr: "--client-send-timeout/CLIENT_SEND_TIMEOUT: must not be negative"},
		{name: "too many proxy workers", args: []string{"--proxy-workers", "65"}, wantErr: "--proxy-workers/PROXY_WORKERS: must be between 1 and 64, got 65"},
		{name: "proxy workers without HTTP", args: []string{"--proxy-workers", "2", "-t", "stdio"}, wantErr: "--proxy-workers/PROXY_WORKERS: worker processes serve HTTP"},
		{name: "bool variable", env: []string{"UI_ENABLED=perhaps"}, wantErr: `UI_ENABLED: invalid value "perhaps"`},
		{name: "tls cert without key", args: []string{"--tls-cert", "/etc/hostname"}, wantErr: "--tls-cert/TLS_CERT and --tls-key/TLS_KEY: give both or neither"},
		{name: "missing tls files", args: []string{"--tls-cert", "/nope.crt", "--tls-key", "/nope.key"}, wantErr: "--tls-cert/TLS_CERT"},
		{name: "bad base url", args: []string{"--base-url", "gateway"}, wantErr: "--base-url/BASE_URL: must be a path starting with /"},
		{name: "bad registry url", env: []string{"REGISTRY_URL=localhost:5001"}, wantErr: "REGISTRY_URL: must be an http or https URL"},
		{name: "auth without key", env: []string{"AUTH_ENABLED=true"}, wantErr: "AUTH_ENABLED: needs a verification key"},
		{name: "bad public key", args: []string{"--jwt-public-key", "not pem"}, wantErr: "--jwt-public-key/JWT_PUBLIC_KEY: not PEM"},
		{name: "bad jwks uri", args: []string{"--jwks-uri", "file:///etc/keys"}, wantErr: "--jwks-uri/JWKS_URI"},
		{name: "bad issuer", args: []string{"--auth-issuer", "issuer"}, wantErr: "--auth-issuer/AUTH_ISSUER"},
		{name: "bad jsonpath", env: []string{"AUTH_SUB_JSONPATH=sub"}, wantErr: "AUTH_SUB_JSONPATH: must be a JSONPath"},
		{name: "reaper interval", args: []string{"--reaper-interval", "5s"}, check: func(c *config) string {
			if c.Kube.ReaperInterval.String() != "5s" {
				return "reaper interval not applied"
			}
			return ""
		}},
		{name: "negative reaper interval", env: []string{"REAPER_INTERVAL=-1s"}, wantErr: "--reaper-interval/REAPER_INTERVAL: must not be negative"},
		{name: "reserved subject header", env: []string{"PROXY_SUBJECT_HEADER=x-nocrd-user"}, wantErr: "--proxy-subject-header/PROXY_SUBJECT_HEADER: must be a header name other than Authorization, Host, Content-Length"},
		{name: "no shutdown timeout", env: []string{"SHUTDOWN_TIMEOUT=0s"}, wantErr: "--shutdown-timeout/SHUTDOWN_TIMEOUT: must be positive, got 0s"},
		{name: "bad trusted proxy", env: []string{"PROXY_TRUSTED_PROXIES=10.0.0.0/8,ingress"}, wantErr: `--proxy-trusted-proxies/PROXY_TRUSTED_PROXIES: "ingress" is not an IP address or a CIDR`},
		{name: "proxy settings", args: []string{"--proxy-trusted-proxies", "10.0.0.0/8", "--proxy-token-cookie=false"}, check: func(c *config) string {
			if c.Proxy.TrustedProxies != "10.0.0.0/8" || c.Proxy.TokenCookie {
				return "proxy settings not applied"
			}
			return ""
		}},
		{name: "proxy defaults", check: func(c *config) string {
			if c.Proxy.TrustedProxies != "" || !c.Proxy.TokenCookie {
				return "unexpected proxy defaults"
			}
			return ""
		}},
		{name: "bad workspace port", args: []string{"--default-workspace-port", "0"}, wantErr: "--default-workspace-port/DEFAULT_WORKSPACE_PORT"},
		{name: "policies", args: []string{"--policy-route", "/etc/hostname, /etc/passwd", "--policy-spawn-timeout", "250ms"},
			env: []string{"POLICY_SPAWN=/etc/hosts", "POLICY_CONFIG_HOSTNAME=X-User", "POLICY_ROUTE_TIMEOUT=2ms"},
			check: func(c *config) string {
				p := c.Policy
				if strings.Join(p.Route, "|") != "/etc/hostname|/etc/passwd" || strings.Join(p.Spawn, "|") != "/etc/hosts" ||
					p.RouteTimeout.String() != "2ms" || p.SpawnTimeout.String() != "250ms" || p.MemoryLimitMB != 64 ||
					p.Configs["hostname"] != "X-User" || len(p.Configs) != 1 {
					return "policy settings not applied"
				}
				return ""
			}},
		{name: "policy defaults", check: func(c *config) string {
			p := c.Policy
			if p.Enabled() || p.RouteTimeout.String() != "5ms" || p.SpawnTimeout.String() != "100ms" || p.Watch.String() != "2s" {
				return "unexpected policy defaults"
			}
			return ""
		}},
		{name: "missing policy file", env: []string{"POLICY_ROUTE=/nope/gate.wasm"}, wantErr: "--policy-route/POLICY_ROUTE: stat /nope/gate.wasm"},
		{name: "bad policy timeout", args: []string{"--policy-route-timeout", "0s"}, wantErr: "--policy-route-timeout/POLICY_ROUTE_TIMEOUT: must be positive"},
		{name: "policy memory not a number", env: []string{"POLICY_MEMORY_LIMIT_MB=lots"}, wantErr: `POLICY_MEMORY_LIMIT_MB: invalid value "lots"`},
		{name: "unknown flag", args: []string{"--bogus"}, wantErr: "flag provided but not defined: -bogus"},
		{name: "stray argument", args: []string{"serve"}, wantErr: `unexpected argument "serve"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parseConfig(c.args, c.env, io.Discard)
			if c.wantErr != "" {
				var ue usageError
				if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error = %v, want a usage error containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := c.check(cfg); msg != "" {
				t.Errorf("%s: %+v", msg, cfg)
			}
		})
	}
}

func TestHelpListsEveryOption(t *testing.T) {
	var out strings.Builder
	_, err := parseConfig([]string{"--help"}, nil, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{
		"-t, --transport", "-m, --mode", "-n, --namespace", "-p, --port", "-l, --log-level", "--tls-cert", "--tls-key",
		"--disable-permission-checks", "--cors-origin", "CORS_ALLOWED_ORIGIN, CORS_ORIGIN", "--cors-methods", "--cors-headers",
		"UI_ENABLED", "AUTH_ENABLED", "AUTH_SUB_JSONPATH", "REGISTRY_URL", "--base-url", "--jwt-secret", "--jwt-public-key",
		"--jwks-uri", "--auth-issuer", "--default-workspace-port", "--kubeconfig", "--context", "--version",
		"--policy-route", "--policy-spawn", "--policy-route-timeout", "--policy-spawn-timeout", "POLICY_MEMORY_LIMIT_MB",
		"POLICY_CACHE_DIR", "POLICY_CONFIG_<NAME>", "GET, POST, OPTIONS", "Content-Type, Authorization, mcp-protocol-version", "$.sub", "nogoo9",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not mention %q", want)
		}
	}
}
