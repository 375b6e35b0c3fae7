package testcluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

func TestPIDFilesAndLiveness(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pids"), 0o755); err != nil {
		t.Fatal(err)
	}
	if Running(dir) || Healthy(dir) {
		t.Fatal("an empty directory reports a running cluster")
	}
	// A real process stands in for one daemon; a dead PID for another.
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	write := func(name string, pid int) {
		if err := os.WriteFile(filepath.Join(dir, "pids", name+".pid"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("etcd", cmd.Process.Pid)
	write("kwok", 1<<22+7) // above the kernel's PID limit: never alive
	if !Running(dir) || Healthy(dir) {
		t.Errorf("Running=%v Healthy=%v with one live daemon of five", Running(dir), Healthy(dir))
	}
	if err := Stop(dir); err != nil {
		t.Fatal(err)
	}
	<-exited
	if Running(dir) || alive(cmd.Process.Pid) {
		t.Error("Stop left the daemon running")
	}
	if _, err := os.Stat(filepath.Join(dir, "pids", "etcd.pid")); !os.IsNotExist(err) {
		t.Errorf("Stop left the pid file: %v", err)
	}
	if err := Stop(dir); err != nil {
		t.Errorf("stopping a stopped cluster: %v", err)
	}
}

func TestHelpers(t *testing.T) {
	if got := tail("a\nb\nc\n", 2); got != "b\nc" {
		t.Errorf("tail = %q", got)
	}
	if got := tail("a", 5); got != "a" {
		t.Errorf("tail = %q", got)
	}
	ports, err := freePorts(3)
	if err != nil || len(ports) != 3 || ports[0] == ports[1] || ports[1] == ports[2] || ports[0] == ports[2] {
		t.Errorf("freePorts = %v, %v", ports, err)
	}
	for ip, want := range map[string]bool{"127.1.0.9": true, "127.1.255.254": true, "127.0.1.1": false, "10.0.0.1": false, "junk": false} {
		if InPodCIDR(ip) != want {
			t.Errorf("InPodCIDR(%s) = %v", ip, !want)
		}
	}
}
