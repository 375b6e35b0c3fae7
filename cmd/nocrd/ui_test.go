package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nocrd/nocrd/internal/testenv"
	"github.com/nocrd/nocrd/ui"
)

// browserReport is what ui/testdata/browser/pod-manager.mjs saw.
type browserReport struct {
	Steps         map[string]json.RawMessage `json:"steps"`
	Error         string                     `json:"error"`
	ConsoleErrors []string                   `json:"consoleErrors"`
}

func (r browserReport) text(t *testing.T, step string) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(r.Steps[step], &s); err != nil {
		t.Fatalf("step %s: %s: %v", step, r.Steps[step], err)
	}
	return s
}

func (r browserReport) object(t *testing.T, step string, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Steps[step], v); err != nil {
		t.Fatalf("step %s: %s: %v", step, r.Steps[step], err)
	}
}

// TestPodManager drives the Pod Manager in headless Chromium, as nocrd
// serves it at /ui and as the ui://nogoo9/app resource inside an MCP App
// host, with authentication on: alice signs in, sees her workspaces and
// not bob's, spawns from a template, reads logs and stops a workspace, and
// the cluster shows the result.
func TestPodManager(t *testing.T) {
	dir := testenv.NPMInstall(t, filepath.Join("..", "..", "ui", "testdata", "browser"))
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("headless Chromium (make deps installs Debian's): %v", err)
	}
	ns := testenv.Namespace(t)
	s := newSigner(t)
	base := startNocrd(t, ns, s)
	alice, bob := s.token(t, "alice", nil), s.token(t, "bob", nil)
	ac, bc := mcpClient(t, base, alice, nil), mcpClient(t, base, bob, nil)
	ctx := context.Background()

	call := func(cs *mcpsdk.ClientSession, name string, args map[string]any) map[string]any {
		t.Helper()
		res, err := cs.CallTool(ctx, &mcpsdk.CallToolParams{Name: name, Arguments: args})
		if err != nil || res.IsError {
			t.Fatalf("%s %v: %v %+v", name, args, err, res)
		}
		m, _ := res.StructuredContent.(map[string]any)
		return m
	}
	spec := map[string]any{"containers": []any{map[string]any{"name": "w", "image": "busybox"}}}
	call(ac, "create_template", map[string]any{"name": "sandbox", "description": "a busybox sandbox", "tag": "v1", "spec": spec,
		"annotations": map[string]string{"nogoo9/default-grace-period": "1"}})
	call(ac, "create_template", map[string]any{"name": "needs-repo", "spec": spec,
		"annotations": map[string]string{"nogoo9/required-context": "REPO", "nogoo9/default-grace-period": "1"}})
	pre := call(ac, "spawn_workspace", map[string]any{"id": "alice-pre", "templateRef": "sandbox"})["podName"].(string)
	servePodLog(t, ns, pre, "hello from alice-pre\n")
	call(bc, "spawn_workspace", map[string]any{"id": "bob-pre", "templateRef": "sandbox"})

	res, err := ac.ReadResource(ctx, &mcpsdk.ReadResourceParams{URI: ui.ResourceURI})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Contents) != 1 || res.Contents[0].MIMEType != ui.ResourceMIMEType {
		t.Fatalf("resource %s: %+v", ui.ResourceURI, res.Contents)
	}
	appPage := filepath.Join(t.TempDir(), "app.html")
	if err := os.WriteFile(appPage, []byte(res.Contents[0].Text), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, mode := range []string{"http", "app"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command("node", "pod-manager.mjs", mode, base, alice, "sandbox", appPage)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
			out, err := cmd.Output()
			if err != nil {
				var stderr []byte
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = ee.Stderr
				}
				t.Fatalf("node pod-manager.mjs %s: %v\n%s%s", mode, err, out, stderr)
			}
			var r browserReport
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("report: %v\n%s", err, out)
			}
			if r.Error != "" {
				t.Fatalf("the browser script failed: %s\nsteps so far: %s", r.Error, out)
			}
			if len(r.ConsoleErrors) > 0 && mode == "app" {
				t.Errorf("console errors: %q", r.ConsoleErrors)
			}

			var signedIn struct {
				Scope, Claims, Status string
				TokenPanelHidden      bool
			}
			r.object(t, "signedIn", &signedIn)
			if want := "namespace " + ns + " · namespaced mode"; !strings.HasPrefix(signedIn.Scope, want) {
				t.Errorf("scope %q, want it to start with %q", signedIn.Scope, want)
			}
			if signedIn.Status != "" {
				t.Errorf("status after signing in: %q", signedIn.Status)
			}
			var listed struct{ Workspaces, Templates []string }
			r.object(t, "listed", &listed)
			// The app runs second: by then alice also has http-keep, and
			// perhaps http-stop while its pod terminates.
			mine := slices.DeleteFunc(slices.Clone(listed.Workspaces), func(id string) bool { return mode == "app" && strings.HasPrefix(id, "http-") })
			if !slices.Equal(mine, []string{"alice-pre"}) || !slices.Equal(listed.Templates, []string{"needs-repo", "sandbox"}) {
				t.Errorf("alice sees workspaces %q and templates %q; want alice-pre (not bob's) and [needs-repo sandbox]", listed.Workspaces, listed.Templates)
			}
			if got := r.text(t, "badID"); !strings.Contains(got, "workspace ID") {
				t.Errorf("an invalid ID: %q", got)
			}
			for _, id := range []string{mode + "-keep", mode + "-stop"} {
				if got := r.text(t, "spawned "+id); !strings.HasPrefix(got, "spawned "+id+" (") {
					t.Errorf("spawning %s: %q", id, got)
				}
			}
			if got := r.text(t, "again"); !strings.Contains(got, "workspace "+mode+"-keep already exists") {
				t.Errorf("spawning %s-keep again: %q", mode, got)
			}
			var logs struct {
				PanelShown        bool
				Pod, Logs, Status string
			}
			r.object(t, "logs", &logs)
			if !logs.PanelShown || logs.Pod != pre || logs.Logs != "hello from alice-pre" {
				t.Errorf("logs: %+v", logs)
			}
			if got := r.text(t, "armed"); !strings.Contains(got, "Really stop?") {
				t.Errorf("the first click on Stop should ask again: %q", got)
			}
			var stopped struct {
				Status     string
				Workspaces []string
			}
			r.object(t, "stopped", &stopped)
			if !strings.HasPrefix(stopped.Status, "workspace "+mode+"-stop: ") || !slices.Contains(stopped.Workspaces, mode+"-keep") {
				t.Errorf("after stopping %s-stop: %+v", mode, stopped)
			}

			switch mode {
			case "http":
				if signedIn.TokenPanelHidden || !strings.Contains(signedIn.Claims, "alice") || !strings.Contains(signedIn.Claims, issuer) {
					t.Errorf("token panel: hidden %v, claims %q", signedIn.TokenPanelHidden, signedIn.Claims)
				}
				if got := r.text(t, "noToken"); !strings.Contains(got, "401") {
					t.Errorf("without a token: %q", got)
				}
				var bad struct{ Status, Claims string }
				r.object(t, "badToken", &bad)
				if !strings.Contains(bad.Status, "401") || !strings.Contains(bad.Claims, "not a JWT") {
					t.Errorf("with a bad token: %+v", bad)
				}
				if got, want := r.text(t, "openLink"), base+"/route/http-keep/?token="+alice; got != want {
					t.Errorf("Open links to %q, want %q", got, want)
				}
				if got := r.text(t, "forgotten"); !strings.Contains(got, "401") {
					t.Errorf("after Forget and a reload: %q", got)
				}
				if got := r.text(t, "noContext"); !strings.Contains(got, "missing required context keys REPO") {
					t.Errorf("a template that needs context, spawned without: %q", got)
				}
				if got := r.text(t, "badContext"); !strings.Contains(got, `context: "oops" is not KEY=value`) {
					t.Errorf("a malformed context: %q", got)
				}
				if got := r.text(t, "withContext"); !strings.HasPrefix(got, "spawned http-ctx (") {
					t.Errorf("with context: %q", got)
				}
			case "app":
				if !signedIn.TokenPanelHidden || !strings.Contains(signedIn.Scope, "in host") {
					t.Errorf("in a host: token panel hidden %v, scope %q", signedIn.TokenPanelHidden, signedIn.Scope)
				}
				var bridged, notified []string
				r.object(t, "bridged", &bridged)
				r.object(t, "notified", &notified)
				if len(bridged) == 0 || bridged[0] != "ui/initialize" || !slices.Contains(bridged, "tools/call spawn_workspace") ||
					!slices.Equal(notified, []string{"ui/notifications/initialized"}) {
					t.Errorf("host saw requests %q and notifications %q", bridged, notified)
				}
				var links int
				r.object(t, "openLinks", &links)
				if links != 0 {
					t.Errorf("%d Open links in a host, which has no route to give them", links)
				}
			}
		})
	}

	// The cluster agrees: alice's kept workspaces are hers, the stopped ones
	// are going, and bob's list has none of them.
	rows := func(cs *mcpsdk.ClientSession) map[string]map[string]any {
		out := map[string]map[string]any{}
		for _, w := range call(cs, "list_workspaces", nil)["workspaces"].([]any) {
			m := w.(map[string]any)
			out[m["id"].(string)] = m
		}
		return out
	}
	mine := rows(ac)
	// The context the page sent is the workspace's environment.
	pod, err := testenv.Admin(t).CoreV1().Pods(ns).Get(ctx, mine["http-ctx"]["name"].(string), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, e := range pod.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	if env["REPO"] != "https://example.com/r.git" || env["BRANCH"] != "main" {
		t.Errorf("http-ctx's environment: %v", env)
	}
	for _, id := range []string{"alice-pre", "http-keep", "app-keep"} {
		w, ok := mine[id]
		if !ok || w["owner"] != "alice" || w["template"] != ns+"/sandbox" {
			t.Errorf("workspace %s: %v", id, w)
		}
	}
	for _, id := range []string{"http-stop", "app-stop"} {
		if w, ok := mine[id]; ok && w["status"] != "Terminating" {
			t.Errorf("stopped workspace %s: %v", id, w)
		}
	}
	if theirs := rows(bc); len(theirs) != 1 || theirs["bob-pre"] == nil {
		t.Errorf("bob's workspaces: %v", theirs)
	}
}

// servePodLog has KWOK's simulated kubelet serve text as the log of pod's
// container w, and waits until it does.
func servePodLog(t *testing.T, ns, pod, text string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), pod+".log")
	line := time.Now().UTC().Format("2006-01-02T15:04:05.000000000Z07:00") + " stdout F " + text
	if err := os.WriteFile(file, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.ServePodLogs(t, ns, pod, "w", file, "")
	testenv.Eventually(t, 30*time.Second, "kwok to serve "+pod+"'s log", func() (bool, error) {
		b, err := testenv.Admin(t).CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: "w"}).DoRaw(context.Background())
		return err == nil && string(b) == text, fmt.Errorf("%s %v", b, err)
	})
}
