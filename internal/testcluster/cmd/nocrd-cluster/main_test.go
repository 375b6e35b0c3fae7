package main

import (
	"fmt"
	"strings"
	"testing"
)

func TestFailureLines(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"passing run", "ok  \tpkg/a\t1.2s\nok  \tpkg/b\t0.1s\n", ""},
		{"failing test with logs and noise",
			"E1124 klog noise\n--- FAIL: TestX (1.00s)\n    x_test.go:10: boom\n        more detail\nE1124 klog noise\n--- FAIL: TestY (0.1s)\n    --- FAIL: TestY/sub (0.1s)\n        y_test.go:3: bad\nFAIL\nFAIL\tpkg/a\t2.0s\nok  \tpkg/b\t1s\n",
			"--- FAIL: TestX (1.00s)\n    x_test.go:10: boom\n        more detail\n--- FAIL: TestY (0.1s)\n    --- FAIL: TestY/sub (0.1s)\n        y_test.go:3: bad\nFAIL\nFAIL\tpkg/a\t2.0s\n"},
		{"passing subtest does not end a failure", "--- FAIL: TestZ (1s)\n    --- PASS: TestZ/a (0s)\n    z_test.go:1: after\n", "--- FAIL: TestZ (1s)\n"},
		{"panic keeps the stack", "panic: oops\n\ngoroutine 7 [running]:\npkg.f()\n\t/x/f.go:3\nFAIL\tpkg\t0.1s\n",
			"panic: oops\n\ngoroutine 7 [running]:\npkg.f()\n\t/x/f.go:3\nFAIL\tpkg\t0.1s\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &failureLines{max: 100}
			// Written in awkward pieces, as pipes deliver output.
			for i := 0; i < len(c.in); i += 7 {
				_, _ = f.Write([]byte(c.in[i:min(i+7, len(c.in))]))
			}
			if got := f.String(); got != c.want {
				t.Errorf("got\n%s\nwant\n%s", got, c.want)
			}
		})
	}
	f := &failureLines{max: 3}
	for i := range 10 {
		fmt.Fprintf(f, "FAIL\tpkg%d\n", i)
	}
	if got := f.String(); got != strings.Join([]string{"FAIL\tpkg7", "FAIL\tpkg8", "FAIL\tpkg9", ""}, "\n") {
		t.Errorf("bounded: %q", got)
	}
}
