//go:build cpuprofile

// A CPU profile of each nocrd process, for `make pgo` only: built with
// -tags cpuprofile, so the binary users run has no such switch.
//
// With NOCRD_CPUPROFILE set to a directory, every nocrd process (the
// primary and each proxy worker, which inherit the environment) writes its
// CPU profile for the first NOCRD_CPUPROFILE_SECONDS (default 120) of its
// life to <dir>/<pid>.pprof. `make pgo` merges them into default.pgo.

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"time"
)

func init() {
	dir := os.Getenv("NOCRD_CPUPROFILE")
	if dir == "" {
		return
	}
	seconds := 120
	if v := os.Getenv("NOCRD_CPUPROFILE_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "NOCRD_CPUPROFILE_SECONDS: want a whole number of seconds, got %q\n", v)
			os.Exit(2)
		}
		seconds = n
	}
	f, err := os.Create(filepath.Join(dir, strconv.Itoa(os.Getpid())+".pprof"))
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "NOCRD_CPUPROFILE: %v\n", err)
		os.Exit(2)
	}
	go func() {
		time.Sleep(time.Duration(seconds) * time.Second)
		pprof.StopCPUProfile()
		_ = f.Close()
	}()
}
