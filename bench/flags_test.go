package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestCheckFlags(t *testing.T) {
	for _, tc := range []struct {
		name     string
		runs     int
		duration time.Duration
		warmup   time.Duration
		conns    int
		only     string
		baseline string
		wantErr  string // the flag named, or "" for none
	}{
		{"defaults", 5, 5 * time.Second, time.Second, 64, "", "", ""},
		{"no warm-up", 5, 5 * time.Second, 0, 64, "", "", ""},
		{"only", 5, 5 * time.Second, time.Second, 64, "JWT", "", ""},
		{"minutes", 1, 2 * time.Minute, time.Second, 1, "", "", ""},
		{"zero runs", 0, 5 * time.Second, time.Second, 64, "", "", "-runs"},
		{"zero connections", 5, 5 * time.Second, time.Second, 0, "", "", "-connections"},
		{"sub-second duration", 5, 500 * time.Millisecond, time.Second, 64, "", "", "-duration"},
		{"fractional duration", 5, 1500 * time.Millisecond, time.Second, 64, "", "", "-duration"},
		{"sub-second warm-up", 5, 5 * time.Second, 500 * time.Millisecond, 64, "", "", "-warmup"},
		{"negative warm-up", 5, 5 * time.Second, -time.Second, 64, "", "", "-warmup"},
		{"bad regexp", 5, 5 * time.Second, time.Second, 64, "JWT(", "", "-only"},
		{"baseline", 5, 5 * time.Second, time.Second, 64, "", os.Args[0], ""},
		{"missing baseline", 5, 5 * time.Second, time.Second, 64, "", "/no/such/nocrd", "-baseline"},
		{"baseline is a directory", 5, 5 * time.Second, time.Second, 64, "", os.TempDir(), "-baseline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			re, err := checkFlags(tc.runs, tc.duration, tc.warmup, tc.conns, tc.only, tc.baseline)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if (re != nil) != (tc.only != "") {
					t.Fatalf("-only %q compiled to %v", tc.only, re)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr+":") {
				t.Fatalf("error %v, want one naming %s", err, tc.wantErr)
			}
		})
	}
}

// TestRunOrder: runs alternate forwards and backwards, so that each target
// is next to the same neighbours in every run.
func TestRunOrder(t *testing.T) {
	ts := []target{{name: "a"}, {name: "b"}, {name: "c"}}
	for _, tc := range []struct {
		run  int
		want string
	}{{1, "abc"}, {2, "cba"}, {3, "abc"}, {4, "cba"}} {
		var got string
		for _, t := range runOrder(ts, tc.run) {
			got += t.name
		}
		if got != tc.want {
			t.Errorf("run %d: %s, want %s", tc.run, got, tc.want)
		}
	}
	if ts[0].name != "a" {
		t.Errorf("runOrder changed its argument: %v", ts)
	}
}
