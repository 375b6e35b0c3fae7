// Command nocrd is the front door for agent workspaces on plain Kubernetes:
// an MCP server (stdio, streamable HTTP and legacy SSE) that lists, creates
// and deletes pods and pod templates stored as ConfigMaps, a drop-in
// replacement for @nogoo9/no-crd.
//
//	nocrd [flags]             serve (see nocrd --help)
//	nocrd demo-setup [flags]  create the namespace and an example template
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/nocrd/nocrd/internal/auth"
	"github.com/nocrd/nocrd/k8s"
	"github.com/nocrd/nocrd/mcp"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	sub := ""
	if len(args) > 0 && args[0] == "demo-setup" {
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
	// Logs go to stderr: stdout carries the stdio transport.
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevels[cfg.Serve.LogLevel]}))
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("nocrd stopped", "err", err)
		return 1
	}
	return 0
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
	if cfg.Auth.Enabled {
		if opts.Verifier, err = auth.NewVerifier(ctx, cfg.Auth, nil); err != nil {
			return err
		}
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
		go func() { errc <- serveHTTP(ctx, cfg, srv.Handler(), func() { _ = srv.Close() }, log) }()
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

// serveHTTP serves h until ctx ends, then calls beforeShutdown, shuts the
// server down (force-closing connections still busy after 5 s) and returns
// only when it has stopped.
func serveHTTP(ctx context.Context, cfg *config, h http.Handler, beforeShutdown func(), log *slog.Logger) error {
	addr := net.JoinHostPort(cfg.Serve.Host, strconv.Itoa(cfg.Serve.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	scheme := "http"
	if cfg.Serve.TLSCert != "" {
		scheme = "https"
	}
	log.Info("serving MCP over HTTP", "addr", ln.Addr().String(),
		"streamable", fmt.Sprintf("%s://%s%s%s", scheme, ln.Addr(), cfg.MCP.BasePath(), mcp.PathStreamable),
		"sse", fmt.Sprintf("%s://%s%s%s", scheme, ln.Addr(), cfg.MCP.BasePath(), mcp.PathSSE))
	served := make(chan error, 1)
	go func() {
		if scheme == "https" {
			served <- hs.ServeTLS(ln, cfg.Serve.TLSCert, cfg.Serve.TLSKey)
		} else {
			served <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	beforeShutdown()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("HTTP shutdown timed out; closing connections", "err", err)
		_ = hs.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
