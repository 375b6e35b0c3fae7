package testcluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Versions of the components. The control plane versions are fixed by the
// wrapper module in components/; KWOK is installed from the module proxy.
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.7.0"
	KWOKModule        = "sigs.k8s.io/kwok"
	KWOKVersion       = "v0.8.0"
)

// Binaries are the absolute paths of the executables a cluster runs.
type Binaries struct {
	Etcd              string
	KubeAPIServer     string
	ControllerManager string
	Scheduler         string
	KWOK              string
	// KWOKModuleDir is the extracted kwok module, whose stage files and CRDs
	// the cluster feeds to KWOK and to the API server.
	KWOKModuleDir string
}

// CacheDir is where built binaries are kept between runs:
// $NOCRD_CACHE_DIR, else the user cache dir (~/.cache/nocrd-testcluster).
func CacheDir() (string, error) {
	if d := os.Getenv("NOCRD_CACHE_DIR"); d != "" {
		return filepath.Abs(d)
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find user cache dir: %w", err)
	}
	return filepath.Join(d, "nocrd-testcluster"), nil
}

// EnsureBinaries builds or reuses the control-plane binaries and KWOK. The
// first build compiles Kubernetes from source and takes minutes; progress is
// written to w. Later calls find the binaries in the cache and return at once.
func EnsureBinaries(ctx context.Context, w io.Writer) (*Binaries, error) {
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	compDir, err := componentsDir()
	if err != nil {
		return nil, err
	}
	key, err := hashFiles(filepath.Join(compDir, "go.mod"), filepath.Join(compDir, "go.sum"))
	if err != nil {
		return nil, err
	}
	binDir := filepath.Join(cache, fmt.Sprintf("k8s-%s-etcd-%s-%s", KubernetesVersion, EtcdVersion, key[:12]))
	b := &Binaries{
		Etcd:              filepath.Join(binDir, "etcd"),
		KubeAPIServer:     filepath.Join(binDir, "kube-apiserver"),
		ControllerManager: filepath.Join(binDir, "kube-controller-manager"),
		Scheduler:         filepath.Join(binDir, "kube-scheduler"),
	}
	if !allExist(b.Etcd, b.KubeAPIServer, b.ControllerManager, b.Scheduler) {
		if err := buildComponents(ctx, w, compDir, binDir); err != nil {
			return nil, err
		}
	}

	kwokDir := filepath.Join(cache, "kwok-"+KWOKVersion)
	b.KWOK = filepath.Join(kwokDir, "kwok")
	if !allExist(b.KWOK) {
		fmt.Fprintf(w, "testcluster: installing kwok %s with go install\n", KWOKVersion)
		cmd := exec.CommandContext(ctx, "go", "install", KWOKModule+"/cmd/kwok@"+KWOKVersion)
		cmd.Env = append(os.Environ(), "GOBIN="+kwokDir, "GOFLAGS=")
		if err := runLogged(cmd, w, "install kwok"); err != nil {
			return nil, err
		}
	}
	dir, err := moduleDir(ctx, KWOKModule, KWOKVersion)
	if err != nil {
		return nil, err
	}
	b.KWOKModuleDir = dir
	return b, nil
}

func buildComponents(ctx context.Context, w io.Writer, compDir, binDir string) error {
	tmp := binDir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(w, "testcluster: building etcd %s, kube-apiserver, kube-controller-manager and kube-scheduler %s from source\n", EtcdVersion, KubernetesVersion)
	fmt.Fprintf(w, "testcluster: a cold build takes about 8-10 minutes on 2 cores; with a warm Go build cache about 30 s\n")
	// Stamp the version the API server reports at /version; unstamped it says
	// v0.0.0-master, which clients such as kubectl cannot parse.
	const v = "k8s.io/component-base/version."
	ldflags := fmt.Sprintf("-X %sgitVersion=%s -X %sgitMajor=1 -X %sgitMinor=%s -X %sgitTreeState=clean",
		v, KubernetesVersion, v, v, strings.Split(KubernetesVersion, ".")[1], v)
	cmd := exec.CommandContext(ctx, "go", "build", "-ldflags", ldflags, "-o", tmp+string(filepath.Separator),
		"go.etcd.io/etcd/server/v3",
		"k8s.io/kubernetes/cmd/kube-apiserver",
		"k8s.io/kubernetes/cmd/kube-controller-manager",
		"k8s.io/kubernetes/cmd/kube-scheduler")
	cmd.Dir = compDir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	stop := ticker(w, "testcluster: still building control plane")
	err := runLogged(cmd, w, "build control plane")
	stop()
	if err != nil {
		return err
	}
	// The etcd server package builds a binary named after its path, "server".
	if err := os.Rename(filepath.Join(tmp, "server"), filepath.Join(tmp, "etcd")); err != nil {
		return fmt.Errorf("rename etcd binary: %w", err)
	}
	if err := os.RemoveAll(binDir); err != nil {
		return err
	}
	if err := os.Rename(tmp, binDir); err != nil {
		return fmt.Errorf("move binaries into cache: %w", err)
	}
	fmt.Fprintf(w, "testcluster: control plane binaries cached in %s\n", binDir)
	return nil
}

// ticker prints msg with the elapsed time every 30 s until stop is called.
func ticker(w io.Writer, msg string) (stop func()) {
	start := time.Now()
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(w, "%s (%s elapsed)\n", msg, time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() { close(done); <-finished }
}

func runLogged(cmd *exec.Cmd, w io.Writer, what string) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", what, err, tail(string(out), 40))
	}
	return nil
}

func moduleDir(ctx context.Context, mod, version string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", mod+"@"+version)
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("download %s@%s: %w", mod, version, err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("decode go mod download output: %w", err)
	}
	if info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("download %s@%s: %s", mod, version, info.Error)
	}
	return info.Dir, nil
}

// componentsDir finds the wrapper module's source: beside this file when the
// package is built from a checkout, else below the repository root found by
// walking up from the working directory.
func componentsDir() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok {
		d := filepath.Join(filepath.Dir(file), "components")
		if allExist(filepath.Join(d, "go.mod")) {
			return d, nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		c := filepath.Join(d, "internal", "testcluster", "components")
		if allExist(filepath.Join(c, "go.mod")) {
			return c, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("cannot find internal/testcluster/components: run from the nocrd checkout")
		}
	}
}

func hashFiles(paths ...string) (string, error) {
	h := sha256.New()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func allExist(paths ...string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
