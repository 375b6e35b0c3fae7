// Command nocrd is the front door for agent workspaces on plain Kubernetes:
// an MCP server (stdio, streamable HTTP and legacy SSE) that lists, creates
// and deletes pods and pod templates stored as ConfigMaps, a drop-in
// replacement for @nogoo9/no-crd.
//
//	nocrd [flags]             serve (see nocrd --help)
//	nocrd demo-setup [flags]  create the namespace and an example template
//	nocrd test-policy [flags] run the test_policy input on stdin against the
//	                          configured policies, print the decision
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/nocrd/nocrd/internal/auth"
	"github.com/nocrd/nocrd/internal/metrics"
	"github.com/nocrd/nocrd/k8s"
	"github.com/nocrd/nocrd/mcp"
	policies "github.com/nocrd/nocrd/wasm-policies"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args, environ []string, stdin io.Reader, stdout, stderr io.Writer) int {
	sub := ""
	if len(args) > 0 && (args[0] == "demo-setup" || args[0] == "test-policy") {
		sub, args = args[0], args[1:]
	}
	cfg, err := parseConfig(args, environ, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "nocrd: %v\nRun 'nocrd --help' for the list of flags and variables.\n", err)
		return 2
	}
	if cfg.showVersion {
		fmt.Fprintln(stdout, "nocrd", versionString())
		return 0
	}
	if sub == "demo-setup" {
		if err := demoSetup(ctx, cfg, stdout); err != nil {
			fmt.Fprintln(stderr, "nocrd demo-setup:", err)
			return 1
		}
		return 0
	}
	if sub == "test-policy" {
		return testPolicyCommand(ctx, cfg, stdin, stdout, stderr)
	}
	cfg.args, cfg.environ, cfg.stderr = args, environ, stderr
	// Logs go to stderr: stdout carries the stdio transport.
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevels[cfg.Serve.LogLevel]}))
	// client-go logs through klog (leader election, watch restarts): its
	// lines go out as nocrd's own, in one format and at LOG_LEVEL.
	klog.SetSlogLogger(log)
	dir, index, isWorker, err := workerRole(environ)
	if err != nil {
		fmt.Fprintf(stderr, "nocrd: %v\n", err)
		return 2
	}
	if isWorker {
		if err := serveWorker(ctx, cfg, dir, index, log); err != nil {
			log.Error("nocrd proxy worker stopped", "worker", index, "err", err)
			return 1
		}
		return 0
	}
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("nocrd stopped", "err", err)
		return 1
	}
	return 0
}

// defaultPolicyCache keeps compiled policies in the user's cache directory
// unless POLICY_CACHE_DIR says where.
func defaultPolicyCache(cfg *config) {
	if cfg.Policy.CacheDir == "" {
		if dir, err := os.UserCacheDir(); err == nil {
			cfg.Policy.CacheDir = filepath.Join(dir, "nocrd", "wasm")
		}
	}
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func serve(ctx context.Context, cfg *config, log *slog.Logger) error {
	kube, err := k8s.New(cfg.Kube)
	if err != nil {
		return err
	}
	opts := mcp.Options{Version: versionString(), Logger: log, Identity: cfg.Auth}
	var verifier *auth.Verifier
	if cfg.Auth.Enabled {
		if verifier, err = auth.NewVerifier(ctx, cfg.Auth, nil); err != nil {
			return err
		}
		opts.Verifier = verifier
	}
	reg := metrics.NewRegistry()
	var pset *policies.Set
	if cfg.Policy.Enabled() {
		defaultPolicyCache(cfg)
		var stop func()
		if pset, stop, err = openPolicies(ctx, cfg.Policy, reg, log); err != nil {
			return err
		}
		defer stop()
		if pset.Chain(policies.HookSpawn).Len() > 0 {
			kube.SetAdmitter(spawnAdmitter{pset.Chain(policies.HookSpawn)})
		}
		opts.Policies = policyTester{set: pset, namespace: kube.DefaultNamespace()}
		log.Info("policies loaded", "route", cfg.Policy.Route, "spawn", cfg.Policy.Spawn)
	}
	srv, err := mcp.New(ctx, cfg.MCP, kube, opts)
	if err != nil {
		return err
	}
	log.Info("nocrd starting", "version", versionString(), "transport", cfg.Serve.Transport,
		"mode", kube.Mode(), "namespace", kube.DefaultNamespace())

	defer srv.Close()
	if cfg.Kube.ReaperInterval > 0 {
		rctx, stopReaper := context.WithCancel(ctx)
		reaperDone := make(chan struct{})
		go func() {
			defer close(reaperDone)
			if err := kube.RunReaper(rctx, cfg.Kube.ReaperInterval, "", log); err != nil {
				log.Error("workspace reaper", "err", err)
			}
		}()
		defer func() { stopReaper(); <-reaperDone }()
	}
	errc := make(chan error, 2)
	running := 0
	if cfg.Serve.Transport == "http" || cfg.Serve.Transport == "both" {
		running++
		// Sessions end before the HTTP server shuts down, so that open
		// event streams do not hold the shutdown up.
		if cfg.Serve.Workers > 1 {
			go func() { errc <- serveWithWorkers(ctx, cfg, kube, srv.Handler(), reg, log, func() { _ = srv.Close() }) }()
		} else {
			fd, err := newFrontDoor(cfg, kube, verifier, srv.Handler(), nil, reg, pset, log)
			if err != nil {
				return err
			}
			ln, err := listen(cfg)
			if err != nil {
				return err
			}
			go func() { errc <- fd.serve(ctx, ln, func() { _ = srv.Close() }) }()
		}
	}
	if cfg.Serve.Transport == "stdio" || cfg.Serve.Transport == "both" {
		running++
		go func() {
			err := srv.RunStdio(ctx)
			log.Info("stdio session ended", "err", err)
			errc <- err
		}()
	}
	// With both transports, the end of the stdio session leaves HTTP serving.
	var first error
	for ; running > 0; running-- {
		err := <-errc
		if err != nil && !errors.Is(err, context.Canceled) && first == nil {
			first = err
		}
		if cfg.Serve.Transport != "both" || first != nil || ctx.Err() != nil {
			break
		}
	}
	return first
}
