package main

// The proxies besides nginx that users of agent workspaces would put in
// front of them instead of nocrd: HAProxy (Debian's), and JupyterHub's
// configurable-http-proxy (CHP, node), which routes notebook servers per
// user as nocrd routes workspaces. Each is set up as its users run it,
// with keep-alive connections to the backend.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
)

// Rows of the peers.
const (
	rowHAProxy = "HAProxy"
	rowCHP     = "configurable-http-proxy"
)

// chpBin is CHP as make bench-deps installs it (npm, in bench/chp).
const chpBin = "bench/chp/node_modules/.bin/configurable-http-proxy"

// startHAProxy runs HAProxy as a keep-alive reverse proxy equivalent to
// nginx's here: the /route/bench prefix stripped, a thread per core,
// connections to the backend reused across clients, no log.
func startHAProxy(dir string, port int, backend string) (func() []int, func(), error) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/haproxy"); serr != nil {
			return nil, nil, errors.New("haproxy is not installed (make bench-deps installs it)")
		}
		bin = "/usr/sbin/haproxy"
	}
	conf := fmt.Sprintf(`global
  nbthread %d
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend public
  bind 127.0.0.1:%d
  default_backend workspace
backend workspace
  http-request replace-path /route/bench(/.*) \1
  option forwardfor
  server w %s
`, runtime.NumCPU(), port, backend)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	if err := launch("haproxy", cmd, port); err != nil {
		return nil, nil, err
	}
	return func() []int { return []int{cmd.Process.Pid} }, func() { stop(cmd) }, nil
}

// startCHP runs configurable-http-proxy, as JupyterHub runs it (one node
// process), with the backend as its default target.
func startCHP(port int, backend string) (func() []int, func(), error) {
	if _, err := os.Stat(chpBin); err != nil {
		return nil, nil, errors.New("configurable-http-proxy is not installed (make bench-deps installs it)")
	}
	cmd := exec.Command("node", chpBin, "--ip", "127.0.0.1", "--port", strconv.Itoa(port),
		"--api-ip", "127.0.0.1", "--api-port", strconv.Itoa(freePort()),
		"--default-target", "http://"+backend, "--log-level", "error")
	cmd.Env = append(os.Environ(), "CONFIGPROXY_AUTH_TOKEN=bench")
	if err := launch("configurable-http-proxy", cmd, port); err != nil {
		return nil, nil, err
	}
	return func() []int { return []int{cmd.Process.Pid} }, func() { stop(cmd) }, nil
}
