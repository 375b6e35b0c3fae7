package testcluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
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

// TestTiedDaemonsDieWithTheirStarter runs a helper process that starts a
// daemon and exits without stopping it, as a panicking test binary would.
// A tied daemon dies with it; an untied one (make cluster-up) lives on
// until Stop.
func TestTiedDaemonsDieWithTheirStarter(t *testing.T) {
	if dir := os.Getenv("NOCRD_TIED_HELPER"); dir != "" {
		c := &Cluster{Dir: dir, tied: os.Getenv("NOCRD_TIED") == "1", exited: map[string]chan struct{}{}}
		if err := c.start("/bin/sleep", "etcd", "60"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	for _, tied := range []bool{true, false} {
		dir := t.TempDir()
		for _, sub := range []string{"logs", "pids"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		helper := exec.Command(os.Args[0], "-test.run=^TestTiedDaemonsDieWithTheirStarter$")
		helper.Env = append(os.Environ(), "NOCRD_TIED_HELPER="+dir, "NOCRD_TIED="+map[bool]string{true: "1", false: "0"}[tied])
		if out, err := helper.CombinedOutput(); err != nil {
			t.Fatalf("helper: %v\n%s", err, out)
		}
		pid, ok := readPID(filepath.Join(dir, "pids", "etcd.pid"))
		if !ok {
			t.Fatal("the helper recorded no pid")
		}
		wait := 5 * time.Second // a tied daemon should go at once
		if !tied {
			wait = 300 * time.Millisecond // long enough for it to have gone, were it tied
		}
		deadline := time.Now().Add(wait)
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if tied && alive(pid) {
			t.Errorf("a tied daemon outlived its starter")
		}
		if !tied && !alive(pid) {
			t.Errorf("an untied daemon died with its starter")
		}
		if err := Stop(dir); err != nil {
			t.Fatal(err)
		}
		if alive(pid) {
			t.Errorf("Stop left pid %d running", pid)
		}
	}
}
