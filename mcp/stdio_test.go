package mcp_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nocrd/nocrd/internal/testenv"
)

// TestStdioOneShot: a client that pipes its requests in and closes stdin
// at once (`echo ... | nocrd --transport stdio`, as no-crd allows) gets an
// answer to each of them, and then nocrd exits.
func TestStdioOneShot(t *testing.T) {
	ns := testenv.Namespace(t)
	cmd := exec.Command(testenv.NocrdBinary(t), "--transport", "stdio", "--mode", "namespaced", "--namespace", ns, "--log-level", "error")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+testenv.WriteKubeconfig(t, testenv.AdminConfig(t)))
	cmd.Stdin = strings.NewReader(strings.Join([]string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"pipe","version":"1"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":"three","method":"tools/call","params":{"name":"current_namespace","arguments":{}}}`,
	}, "\n") + "\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("nocrd: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("nocrd still runs 30 s after its stdin ended; it wrote:\n%s", stdout.String())
	}
	answers := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Result json.RawMessage `json:"result"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil || len(m.Result) == 0 {
			t.Fatalf("not an answer: %q (%v)", line, err)
		}
		answers[string(m.ID)] = string(m.Result)
	}
	if len(answers) != 3 || !strings.Contains(answers["1"], `"serverInfo"`) || !strings.Contains(answers["2"], `"current_namespace"`) ||
		!strings.Contains(answers[`"three"`], "Namespace: "+ns) {
		t.Fatalf("answers by id: %v\nstdout:\n%s\nstderr:\n%s", answers, stdout.String(), stderr.String())
	}
}
