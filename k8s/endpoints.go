package k8s

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

// EndpointState says whether a workspace can take traffic.
type EndpointState uint8

const (
	// EndpointAbsent: no workspace pod has this id.
	EndpointAbsent EndpointState = iota
	// EndpointNotReady: the pod exists but is not Ready, is terminating or
	// has no IP yet.
	EndpointNotReady
	// EndpointReady: traffic may go to Addr.
	EndpointReady
	// EndpointHostNetwork: the pod uses its node's network (hostNetwork).
	// Its IP is the node's, shared with every such pod on the node and
	// with the node's own services, so an address there may be another
	// workspace's: it is never routed.
	EndpointHostNetwork
)

// Endpoint is where a workspace's traffic goes, as the route cache knows it.
type Endpoint struct {
	ID      string
	PodName string
	UID     types.UID
	// Addr is the pod's ip:port: its IP and the nogoo9/workspace-port
	// annotation, else the default workspace port.
	Addr  string
	Owner string
	State EndpointState
}

// EndpointCacheOptions configure an EndpointCache.
type EndpointCacheOptions struct {
	// Size bounds how many workspace ids are cached, and apart from them
	// how many ids found to have no workspace.
	Size int
	// DefaultPort is used for pods without nogoo9/workspace-port.
	DefaultPort int
	// OnGone is called with an address that no longer belongs to the
	// workspace it was cached for (pod deleted, IP changed, not ready), so
	// that the caller can close connections to it.
	OnGone func(addr string)
	Logger *slog.Logger
}

// EndpointCache maps workspace ids of one namespace to their pods' addresses.
// Entries are filled on a miss from the API server and kept correct by a
// watch on every workspace pod of the namespace: an event for a cached id
// updates or drops it before the next lookup sees it. Every entry carries
// the resourceVersion it was read at, and an event or a list answer only
// replaces what is older, so a list that raced with a delete can never bring
// a deleted pod back. While the watch is not running nothing is cached and
// every lookup asks the API server. Ids found to have no workspace are kept
// in an LRU of their own, of the same size, so that lookups of unknown ids
// never push out a workspace's entry.
type EndpointCache struct {
	c    *Client
	ns   string
	opts EndpointCacheOptions
	log  *slog.Logger

	lru *lru.Cache[string, *cacheEntry]
	// unknown holds the ids found to have no workspace, apart from lru:
	// lookups of ids nobody has (a client trying random ones) push out
	// only each other, never a workspace's entry.
	unknown *lru.Cache[string, *cacheEntry]
	// mu serialises every change to the cache, the IP index and flights;
	// reads of the LRU take only its own lock.
	mu      sync.Mutex
	byIP    map[string]string // pod IP -> id, for ready entries
	flights map[string]*flight
	gen     uint64 // bumped when the cache is cleared
	synced  atomic.Bool
	// misses is a semaphore bounding concurrent lookups at the API server,
	// so a flood of unknown ids cannot become a flood of LIST calls.
	misses chan struct{}

	hits, missCount, evictions, invalidations atomic.Uint64
	removing                                  bool // set while mu is held: the eviction is ours

	// watchTimeout is how long the API server is asked to keep a watch
	// open (randomised up to twice that, as client-go's reflectors do);
	// the cache then resumes it from the last resourceVersion it saw.
	watchTimeout time.Duration
	// backoffBase is the first wait after a watch fails; each failure in
	// a row doubles it, up to maxWatchBackoff.
	backoffBase time.Duration

	afterFetch  func(id string) // test hook: runs between a list and its use
	onEvent     func()          // test hook: runs before each watch event is applied
	beforeWatch func() error    // test hook: runs before each watch request; an error fails it
}

const (
	// defaultWatchTimeout is client-go's reflectors' minimum watch timeout.
	defaultWatchTimeout = 5 * time.Minute
	// maxWatchBackoff bounds the wait between failed watches.
	maxWatchBackoff = 30 * time.Second
	// minWatchRun is how long a watch must have run for its end to be
	// taken as the server's timeout and resumed at once; one that ends
	// sooner is a failure, and the next try waits.
	minWatchRun = 500 * time.Millisecond
)

type cacheEntry struct {
	rv uint64
	ep Endpoint
}

// flight is a lookup at the API server in progress; events that arrive for
// its id meanwhile are recorded so the lookup can tell if it is stale.
type flight struct {
	done    chan struct{}
	eventRV uint64
	ep      Endpoint
	err     error
}

// ErrWorkspaceID is returned for an id that cannot be a workspace id.
var ErrWorkspaceID = errors.New("not a valid workspace id")

// NewEndpointCache returns a cache for the workspaces of namespace ns (the
// client's default namespace when empty). Run must be running for entries
// to be cached.
func (c *Client) NewEndpointCache(ns string, opts EndpointCacheOptions) (*EndpointCache, error) {
	ns, err := c.Namespace(ns)
	if err != nil {
		return nil, err
	}
	if opts.Size <= 0 {
		opts.Size = 4096
	}
	if opts.DefaultPort == 0 {
		opts.DefaultPort = 3000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	e := &EndpointCache{
		c: c, ns: ns, opts: opts, log: opts.Logger,
		byIP: map[string]string{}, flights: map[string]*flight{},
		misses:       make(chan struct{}, 16),
		watchTimeout: defaultWatchTimeout,
		backoffBase:  500 * time.Millisecond,
	}
	if err := e.initLRUs(opts.Size); err != nil {
		return nil, err
	}
	return e, nil
}

// initLRUs makes the two LRUs, of size entries each.
func (e *EndpointCache) initLRUs(size int) (err error) {
	if e.lru, err = lru.NewWithEvict(size, e.onEvict); err != nil {
		return err
	}
	e.unknown, err = lru.NewWithEvict(size, e.onEvict)
	return err
}

// peek returns the entry of id, from either LRU, without touching its
// recency; mu is held.
func (e *EndpointCache) peek(id string) (*cacheEntry, bool) {
	if ent, ok := e.lru.Peek(id); ok {
		return ent, ok
	}
	return e.unknown.Peek(id)
}

// onEvict runs with mu held (every Add and Remove is made under it).
func (e *EndpointCache) onEvict(id string, ent *cacheEntry) {
	if e.byIP[ipOf(ent.ep.Addr)] == id {
		delete(e.byIP, ipOf(ent.ep.Addr))
	}
	if e.removing {
		e.invalidations.Add(1)
	} else {
		e.evictions.Add(1)
	}
}

func ipOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return ""
}

// Synced reports whether the watch is running, so cached answers are
// current.
func (e *EndpointCache) Synced() bool { return e.synced.Load() }

// Stats are the cache's counters since it was made.
type EndpointCacheStats struct {
	Hits, Misses, Evictions, Invalidations uint64
	Len                                    int
}

// Stats returns the cache's counters.
func (e *EndpointCache) Stats() EndpointCacheStats {
	return EndpointCacheStats{
		Hits: e.hits.Load(), Misses: e.missCount.Load(), Evictions: e.evictions.Load(),
		Invalidations: e.invalidations.Load(), Len: e.lru.Len() + e.unknown.Len(),
	}
}

// Lookup returns the endpoint of workspace id. id is not retained on a hit,
// so callers may pass a string that aliases a reused buffer; it is copied
// before being cached.
func (e *EndpointCache) Lookup(ctx context.Context, id string) (Endpoint, error) {
	if ent, ok := e.lru.Get(id); ok {
		e.hits.Add(1)
		return ent.ep, nil
	}
	if ent, ok := e.unknown.Get(id); ok {
		e.hits.Add(1)
		return ent.ep, nil
	}
	e.missCount.Add(1)
	if validateID(id) != nil {
		return Endpoint{}, fmt.Errorf("%w: %q", ErrWorkspaceID, id)
	}
	id = string([]byte(id)) // owned copy: it becomes a map key
	e.mu.Lock()
	if ent, ok := e.peek(id); ok {
		e.mu.Unlock()
		return ent.ep, nil
	}
	if f := e.flights[id]; f != nil {
		e.mu.Unlock()
		select {
		case <-f.done:
			return f.ep, f.err
		case <-ctx.Done():
			return Endpoint{}, ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	e.flights[id] = f
	defer close(f.done)
	for attempt := 0; ; attempt++ {
		gen, cacheable := e.gen, e.synced.Load()
		e.mu.Unlock()
		ep, rv, err := e.fetch(ctx, id)
		if e.afterFetch != nil {
			e.afterFetch(id)
		}
		e.mu.Lock()
		// An event newer than the list, or a cache reset, came in while the
		// list was on its way: ask again rather than guess which is right.
		stale := err == nil && (f.eventRV > rv || gen != e.gen)
		if stale && attempt < 3 {
			continue
		}
		delete(e.flights, id)
		f.ep, f.err = ep, err
		var gone string
		if err == nil && cacheable && !stale {
			gone = e.put(id, &cacheEntry{rv: rv, ep: ep})
		}
		e.mu.Unlock()
		e.forget(gone)
		return ep, err
	}
}

// fetch reads workspace id from the API server: its endpoint and the
// resourceVersion of the list it came from.
func (e *EndpointCache) fetch(ctx context.Context, id string) (Endpoint, uint64, error) {
	select {
	case e.misses <- struct{}{}:
		defer func() { <-e.misses }()
	case <-ctx.Done():
		return Endpoint{}, 0, ctx.Err()
	}
	list, err := e.c.kube.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{
		LabelSelector: workspaceSelector(id),
	})
	if err != nil {
		return Endpoint{}, 0, fmt.Errorf("look up workspace %s in %s: %w", id, e.ns, err)
	}
	rv, err := strconv.ParseUint(list.ResourceVersion, 10, 64)
	if err != nil {
		return Endpoint{}, 0, fmt.Errorf("look up workspace %s: resourceVersion %q: %w", id, list.ResourceVersion, err)
	}
	found := oldestPod(list.Items)
	if found == nil {
		return Endpoint{ID: id, State: EndpointAbsent}, rv, nil
	}
	return e.endpointOf(found), rv, nil
}

// endpointOf reads the endpoint of a workspace pod.
func (e *EndpointCache) endpointOf(p *corev1.Pod) Endpoint {
	ep := Endpoint{ID: p.Labels[LabelWorkspaceID], PodName: p.Name, UID: p.UID, Owner: podOwner(p), State: EndpointNotReady}
	port := e.opts.DefaultPort
	if v, err := strconv.Atoi(p.Annotations[AnnotationWorkspacePort]); err == nil && v > 0 && v < 65536 {
		port = v
	}
	if p.Status.PodIP != "" {
		ep.Addr = net.JoinHostPort(p.Status.PodIP, strconv.Itoa(port))
	}
	if p.Spec.HostNetwork {
		ep.State = EndpointHostNetwork
		return ep
	}
	if p.DeletionTimestamp != nil || p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning {
		return ep
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			ep.State = EndpointReady
		}
	}
	return ep
}

// put stores an entry and returns the address of a workspace it displaced
// from its IP, if any; mu is held.
func (e *EndpointCache) put(id string, ent *cacheEntry) (gone string) {
	gone = e.takeIP(id, ent.ep)
	if ent.ep.State == EndpointReady {
		e.byIP[ipOf(ent.ep.Addr)] = id
	}
	if ent.ep.State == EndpointAbsent {
		e.unknown.Add(id, ent)
	} else {
		e.lru.Add(id, ent)
	}
	return gone
}

// takeIP gives ep's IP to workspace id: any other cached workspace still
// holding it is dropped, whatever the order in which events arrived, and
// its address returned. mu is held.
func (e *EndpointCache) takeIP(id string, ep Endpoint) (gone string) {
	if ep.State != EndpointReady {
		return ""
	}
	other, ok := e.byIP[ipOf(ep.Addr)]
	if !ok || other == id {
		return ""
	}
	if o, ok := e.lru.Peek(other); ok {
		gone = o.ep.Addr
	}
	e.remove(other)
	return gone
}

// forget tells OnGone about addresses no longer held; mu is not held.
func (e *EndpointCache) forget(addrs ...string) {
	for _, a := range addrs {
		if a != "" && e.opts.OnGone != nil {
			e.opts.OnGone(a)
		}
	}
}

// remove drops id; mu is held.
func (e *EndpointCache) remove(id string) {
	e.removing = true
	e.lru.Remove(id)
	e.unknown.Remove(id)
	e.removing = false
}

// apply folds one watch event into the cache.
func (e *EndpointCache) apply(typ watch.EventType, p *corev1.Pod) {
	id := p.Labels[LabelWorkspaceID]
	rv, err := strconv.ParseUint(p.ResourceVersion, 10, 64)
	if id == "" || err != nil {
		return
	}
	ep := e.endpointOf(p)
	if typ == watch.Deleted {
		ep = Endpoint{ID: id, State: EndpointAbsent}
	}
	var gone []string
	replaced := false
	e.mu.Lock()
	if f := e.flights[id]; f != nil && rv > f.eventRV {
		f.eventRV = rv
	}
	if old, ok := e.peek(id); ok && rv > old.rv {
		var replace, drop bool
		switch {
		case old.ep.UID == p.UID:
			replace = true // the cached pod changed or was deleted
		case typ == watch.Deleted:
			// Another pod with this id went away: the cached one stands,
			// unless the id was cached as absent, which was then wrong.
			drop = old.ep.UID == ""
		case old.ep.UID == "":
			replace = true // a pod appeared for an id cached as absent
		default:
			drop = true // two pods claim the id: the next lookup settles it
		}
		if (replace || drop) && old.ep.State == EndpointReady && (!replace || ep.State != EndpointReady || ep.Addr != old.ep.Addr) {
			gone = append(gone, old.ep.Addr)
		}
		if replace || drop {
			e.remove(id)
		}
		if replace {
			gone = append(gone, e.put(id, &cacheEntry{rv: rv, ep: ep}))
			replaced = true
		}
	}
	if !replaced {
		// A pod that now holds an IP takes it from any cached workspace
		// that had it, even when its own id is not cached (put does this
		// for an entry it stores).
		gone = append(gone, e.takeIP(id, ep))
	}
	e.mu.Unlock()
	e.forget(gone...)
}

// clear empties the cache, for when the watch stops or restarts.
func (e *EndpointCache) clear() {
	e.mu.Lock()
	e.gen++
	var gone []string
	for _, id := range e.lru.Keys() {
		if ent, ok := e.lru.Peek(id); ok && ent.ep.State == EndpointReady {
			gone = append(gone, ent.ep.Addr)
		}
		e.remove(id)
	}
	e.removing = true
	e.unknown.Purge()
	e.removing = false
	e.mu.Unlock()
	e.forget(gone...)
}

// Run watches the namespace's workspace pods until ctx ends. The API
// server ends every watch after a while (Run asks for 5 to 10 minutes, as
// client-go's reflectors do; unasked it would be 30 to 60, from its
// --min-request-timeout); Run then resumes it from the last
// resourceVersion it saw, keeping the cache and staying synced. Only when
// the watch fails (the API server is unreachable, or the resourceVersion
// has expired) is the cache emptied and rebuilt from a fresh list, after
// a wait that doubles with each failure in a row. Entries are cached only
// while the watch runs.
func (e *EndpointCache) Run(ctx context.Context) error {
	e.c.cachesMu.Lock()
	e.c.caches[e] = struct{}{}
	e.c.cachesMu.Unlock()
	defer func() {
		e.c.cachesMu.Lock()
		delete(e.c.caches, e)
		e.c.cachesMu.Unlock()
	}()
	backoff := e.backoffBase
	for {
		synced, err := e.watchOnce(ctx)
		e.synced.Store(false)
		e.clear()
		if ctx.Err() != nil {
			return nil
		}
		if synced {
			// It ran before it failed: this is a first failure, not
			// one more of a series.
			backoff = e.backoffBase
		}
		e.log.Warn("workspace watch stopped; restarting", "namespace", e.ns, "err", err, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(2*backoff, maxWatchBackoff)
	}
}

// watchOnce lists to learn the current resourceVersion, then watches from
// it, resuming each watch the API server ends from the last
// resourceVersion seen, until a watch fails; it returns why, and whether
// the cache was synced meanwhile.
func (e *EndpointCache) watchOnce(ctx context.Context) (synced bool, err error) {
	sel := LabelType + "=" + TypeWorkspace
	list, err := e.c.kube.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: sel, Limit: 1})
	if err != nil {
		return false, fmt.Errorf("list workspace pods in %s: %w", e.ns, err)
	}
	rv := list.ResourceVersion
	for {
		w, err := e.watch(ctx, sel, rv)
		if err != nil {
			return synced, err
		}
		if !synced {
			// Anything cached before this point may have missed events.
			e.clear()
			e.synced.Store(true)
			synced = true
			e.log.Debug("workspace watch running", "namespace", e.ns, "resourceVersion", rv)
		}
		start := time.Now()
		rv, err = e.follow(ctx, w, rv)
		w.Stop()
		if err != nil {
			return true, err
		}
		if time.Since(start) < minWatchRun {
			return true, errors.New("watch closed at once")
		}
		e.log.Debug("workspace watch ended; resuming", "namespace", e.ns, "resourceVersion", rv)
	}
}

// watch starts a watch of the workspace pods from resourceVersion rv.
func (e *EndpointCache) watch(ctx context.Context, sel, rv string) (watch.Interface, error) {
	if e.beforeWatch != nil {
		if err := e.beforeWatch(); err != nil {
			return nil, err
		}
	}
	timeout := int64((e.watchTimeout + rand.N(e.watchTimeout+1)) / time.Second)
	w, err := e.c.kube.CoreV1().Pods(e.ns).Watch(ctx, metav1.ListOptions{
		LabelSelector: sel, ResourceVersion: rv, AllowWatchBookmarks: true, TimeoutSeconds: &timeout,
	})
	if err != nil {
		return nil, fmt.Errorf("watch workspace pods in %s: %w", e.ns, err)
	}
	return w, nil
}

// follow applies the events of w until it ends, and returns the last
// resourceVersion seen (rv when none) and, unless the server simply ended
// the watch, why it ended.
func (e *EndpointCache) follow(ctx context.Context, w watch.Interface, rv string) (string, error) {
	for {
		select {
		case <-ctx.Done():
			return rv, ctx.Err()
		case ev, ok := <-w.ResultChan():
			if !ok {
				return rv, nil
			}
			switch ev.Type {
			case watch.Error:
				return rv, fmt.Errorf("watch error: %w", apierrors.FromObject(ev.Object))
			case watch.Bookmark:
				if p, ok := ev.Object.(*corev1.Pod); ok && p.ResourceVersion != "" {
					rv = p.ResourceVersion
				}
			case watch.Added, watch.Modified, watch.Deleted:
				if p, ok := ev.Object.(*corev1.Pod); ok {
					if e.onEvent != nil {
						e.onEvent()
					}
					e.apply(ev.Type, p)
					rv = p.ResourceVersion
				}
			}
		}
	}
}
