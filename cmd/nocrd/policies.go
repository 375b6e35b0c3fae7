package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/valyala/fasthttp"
	corev1 "k8s.io/api/core/v1"

	"github.com/nocrd/nocrd/internal/metrics"
	"github.com/nocrd/nocrd/k8s"
	"github.com/nocrd/nocrd/proxy"

	policies "github.com/nocrd/nocrd/wasm-policies"
)

// routePolicy runs the route chain for the proxy (proxy.Policy).
type routePolicy struct {
	chain *policies.Chain
	calls sync.Pool // *routeCall
}

// routeCall is the per-request state, pooled so a decision allocates
// nothing.
type routeCall struct {
	req  fastRequest
	resp policies.Response
}

func newRoutePolicy(chain *policies.Chain) *routePolicy {
	return &routePolicy{chain: chain, calls: sync.Pool{New: func() any { return &routeCall{} }}}
}

func (r *routePolicy) Decide(_ context.Context, req *proxy.Upstream, info proxy.RouteInfo, resp *fasthttp.Response) (bool, error) {
	c := r.calls.Get().(*routeCall)
	defer r.calls.Put(c)
	c.req = fastRequest{req: req, info: info, addr: c.req.addr[:0], head: c.req.head[:0]}
	next, _, err := r.chain.Handle(&c.req, &c.resp)
	c.req.req, c.req.info = nil, proxy.RouteInfo{}
	if err != nil || next {
		return next, err
	}
	resp.SetStatusCode(c.resp.Status)
	for _, f := range c.resp.Header {
		resp.Header.AddBytesKV(f.Name, f.Value)
	}
	if len(resp.Header.ContentType()) == 0 {
		resp.Header.SetContentType("text/plain; charset=utf-8")
	}
	resp.SetBody(c.resp.Body)
	return false, nil
}

// fastRequest presents the proxy's upstream request to the policies. Its
// header names are canonical (the server canonicalises them as it reads,
// and fasthttp the guest's as they are set). The reserved X-Nocrd-*
// headers are virtual: read from the proxy's RouteInfo, never from the
// request (where a client may have forged them); writing them, like any
// write the proxy refuses (see proxy.Upstream), does nothing.
//
// Headers are read from a serialised copy (proxy.Fields), made once and
// again after a setter.
type fastRequest struct {
	req  *proxy.Upstream
	info proxy.RouteInfo
	addr []byte
	head []byte // the copy; empty when stale
}

// snapshot returns the copy of the request's head, made if stale; range
// over its fields with proxy.Fields (at the call site, where the iterator
// can live on the stack).
func (f *fastRequest) snapshot() []byte {
	if len(f.head) == 0 {
		f.head = f.req.AppendHead(f.head)
	}
	return f.head
}

// reserved are the virtual headers, lowercase as the ABI lists names.
var reserved = []struct {
	name  string
	value func(*proxy.RouteInfo) []byte
}{
	{"x-nocrd-subject", func(i *proxy.RouteInfo) []byte { return i.Subject }},
	{"x-nocrd-claims", func(i *proxy.RouteInfo) []byte { return i.Claims }},
	{"x-nocrd-workspace", func(i *proxy.RouteInfo) []byte { return i.Workspace }},
	{"x-nocrd-owner", func(i *proxy.RouteInfo) []byte { return unsafe.Slice(unsafe.StringData(i.Owner), len(i.Owner)) }},
}

func (f *fastRequest) Method() []byte { return f.req.Method() }
func (f *fastRequest) SetMethod(method []byte) {
	f.req.SetMethod(method)
	f.head = f.head[:0]
}

func (f *fastRequest) URI() []byte { return f.req.URI() }
func (f *fastRequest) SetURI(uri []byte) {
	f.req.SetURI(uri)
	f.head = f.head[:0]
}

// Body: a route request's body streams to the workspace; one without a
// body reads as empty.
func (f *fastRequest) Body() ([]byte, bool) { return nil, !f.req.HasBody() }

func (f *fastRequest) SourceAddr() []byte {
	if a, ok := f.info.Client.(*net.TCPAddr); ok {
		f.addr = netip.AddrPortFrom(a.AddrPort().Addr().Unmap(), a.AddrPort().Port()).AppendTo(f.addr[:0])
		return f.addr
	}
	if f.info.Client == nil {
		return nil
	}
	f.addr = append(f.addr[:0], f.info.Client.String()...)
	return f.addr
}

func (f *fastRequest) AppendHeaderNames(dst []byte) ([]byte, int) {
	start, n := len(dst), 0
	for _, r := range reserved {
		if len(r.value(&f.info)) > 0 {
			dst = append(append(dst, r.name...), 0)
			n++
		}
	}
	for k := range proxy.Fields(f.snapshot()) {
		if proxy.IsReserved(k) {
			continue
		}
		name := len(dst)
		for _, c := range k {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
		}
		if seenName(dst[start:name], dst[name:]) {
			dst = dst[:name]
			continue
		}
		dst = append(dst, 0)
		n++
	}
	return dst, n
}

// seenName reports whether the NUL-separated list holds name.
func seenName(list, name []byte) bool {
	for len(list) > 0 {
		i := 0
		for list[i] != 0 {
			i++
		}
		if string(list[:i]) == string(name) {
			return true
		}
		list = list[i+1:]
	}
	return false
}

func (f *fastRequest) AppendHeaderValues(dst, name []byte) ([]byte, int) {
	if proxy.IsReserved(name) {
		for _, r := range reserved {
			// Their names share the prefix, so the length tells most of
			// them apart before a comparison; a name matches one at most.
			if len(name) == len(r.name) && strings.EqualFold(unsafe.String(unsafe.SliceData(name), len(name)), r.name) {
				if v := r.value(&f.info); len(v) > 0 {
					return append(append(dst, v...), 0), 1
				}
				break
			}
		}
		return dst, 0
	}
	n := 0
	for k, v := range proxy.Fields(f.snapshot()) {
		if bytes.EqualFold(k, name) {
			dst = append(append(dst, v...), 0)
			n++
		}
	}
	return dst, n
}

// The setters go through proxy.Upstream, which refuses what the proxy
// owns (the reserved headers among them).
func (f *fastRequest) SetHeader(name, value []byte) {
	if f.req.SetHeader(name, value) {
		f.head = f.head[:0]
	}
}

func (f *fastRequest) AddHeader(name, value []byte) {
	if f.req.AddHeader(name, value) {
		f.head = f.head[:0]
	}
}

func (f *fastRequest) RemoveHeader(name []byte) {
	if f.req.DelHeader(name) {
		f.head = f.head[:0]
	}
}

// openPolicies loads the policies of cfg (a module that cannot be used
// stops start-up, naming its file) and reloads them when their files change
// and on SIGHUP, until stop, which then closes them.
func openPolicies(ctx context.Context, cfg policies.Config, reg *metrics.Registry, log *slog.Logger) (set *policies.Set, stop func(), err error) {
	if set, err = policies.Open(ctx, cfg, reg, log); err != nil {
		return nil, nil, err
	}
	rctx, stopReload := context.WithCancel(ctx)
	reloads := make(chan struct{}, 2)
	go func() { set.Watch(rctx); reloads <- struct{}{} }()
	go func() { reloadOnSignal(rctx, set, log); reloads <- struct{}{} }()
	return set, func() {
		stopReload()
		<-reloads
		<-reloads
		_ = set.Close(context.Background())
	}, nil
}

// reloadOnSignal reloads set on every SIGHUP until ctx ends.
func reloadOnSignal(ctx context.Context, set *policies.Set, log interface {
	Info(string, ...any)
	Error(string, ...any)
}) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			changed, err := set.Reload(ctx)
			switch {
			case err != nil:
				log.Error("policy reload on SIGHUP failed; the policies in force stay", "err", err)
			case changed:
				log.Info("policies reloaded on SIGHUP")
			default:
				log.Info("SIGHUP: no policy file changed")
			}
		}
	}
}

// spawnAdmitter runs the spawn chain for the k8s client (k8s.Admitter):
// each policy gets a synthetic POST /_nocrd/admission whose JSON body is the
// review, and every policy must admit. A policy that lets the request
// through (next) or answers 2xx with no body admits as is; a 2xx with a
// body admits with that JSON Patch applied (the next policy sees the
// patched pod); a 4xx denies with its body as the reason; anything else,
// and any failure, denies (fail closed).
type spawnAdmitter struct{ chain *policies.Chain }

func (a spawnAdmitter) Admit(_ context.Context, review *k8s.AdmissionReview) (*corev1.Pod, error) {
	pod, r, err := admit(a.chain, review, (*policies.Module).Handle)
	if err != nil {
		return nil, err
	}
	if r != nil {
		return nil, &k8s.AdmissionError{Policy: r.policy, Reason: r.reason}
	}
	return pod, nil
}

// refusal is a policy's no: its answer, or how it failed (fault).
type refusal struct {
	policy, reason, fault string
	status                int
}

// admit runs review through chain with handle (Module.Handle, or
// Module.Try for a dry run) and returns the pod to create, or why not.
func admit(chain *policies.Chain, review *k8s.AdmissionReview, handle func(*policies.Module, policies.Request, *policies.Response) (bool, error)) (*corev1.Pod, *refusal, error) {
	pod := review.Pod
	for _, m := range chain.Modules() {
		r := *review
		r.Pod = pod
		body, err := json.Marshal(&r)
		if err != nil {
			return nil, nil, fmt.Errorf("admission review: %w", err)
		}
		msg := policies.NewMessage(http.MethodPost, policies.AdmissionPath, body)
		msg.AddHeader([]byte("Content-Type"), []byte("application/json"))
		msg.AddHeader([]byte(proxy.HeaderSubject), []byte(review.Owner))
		var resp policies.Response
		next, err := handle(m, msg, &resp)
		var fe *policies.FaultError
		switch {
		case errors.As(err, &fe):
			return nil, &refusal{policy: m.Name, status: http.StatusForbidden, fault: fe.Reason,
				reason: "the policy failed to decide (" + fe.Reason + "), so the request is denied"}, nil
		case err != nil:
			return nil, &refusal{policy: m.Name, status: http.StatusForbidden, fault: "unavailable", reason: err.Error()}, nil
		case next:
			continue
		case resp.Status >= 200 && resp.Status < 300:
			if len(bytes.TrimSpace(resp.Body)) == 0 {
				continue
			}
			if pod, err = k8s.ApplyJSONPatch(pod, resp.Body); err != nil {
				return nil, &refusal{policy: m.Name, status: http.StatusForbidden, fault: "malformed",
					reason: "it answered with a patch that cannot be used: " + err.Error()}, nil
			}
		case resp.Status >= 400 && resp.Status < 500:
			reason := strings.TrimSpace(string(resp.Body))
			if reason == "" {
				reason = http.StatusText(resp.Status)
			}
			return nil, &refusal{policy: m.Name, status: resp.Status, reason: reason}, nil
		default:
			return nil, &refusal{policy: m.Name, status: http.StatusForbidden, fault: "malformed",
				reason: fmt.Sprintf("it answered %d, which neither admits (2xx) nor denies (4xx), so the request is denied", resp.Status)}, nil
		}
	}
	return pod, nil, nil
}
