package k8s

// Generic access to any resource type the API server offers, as k-mcp's
// resource_list, resource_get and resource_apply tools give: types are
// found through discovery (so CRDs work, and kubectl's short names), kept
// inside the client's scope like every other operation, and some are
// never reachable: Secrets, ServiceAccounts and RBAC hold credentials and
// permissions, and nocrd's own objects (pods, template ConfigMaps) have
// tools that validate, admit and check ownership, which a generic apply
// would go around.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// configMaps is the resource pod templates are kept in.
var configMaps = schema.GroupResource{Resource: "configmaps"}

// errTemplateApply refuses a generic apply of a pod template.
var errTemplateApply = &InputError{Field: "manifest", Reason: "pod templates are written with create_template and update_template, which validate their spec"}

// FieldManager is the name nocrd's server-side applies are recorded under.
const FieldManager = "nocrd"

// maxApplyDocuments bounds the objects one apply may carry.
const maxApplyDocuments = 50

// restricted reports whether the resource type gr is never served by the
// generic resource operations: Secrets and ServiceAccounts hold
// credentials, RBAC grants permissions.
func restricted(gr schema.GroupResource) bool {
	return gr.Group == "" && (gr.Resource == "secrets" || gr.Resource == "serviceaccounts") ||
		gr.Group == "rbac.authorization.k8s.io"
}

// rediscoverEvery bounds how often a miss makes discovery be read again.
const rediscoverEvery = time.Second

// resourceTypes resolves resource type names through discovery, read
// lazily, and again when a name is not found (see rediscover).
type resourceTypes struct {
	once     sync.Once
	err      error
	mapper   meta.RESTMapper
	cached   discovery.CachedDiscoveryInterface
	deferred *restmapper.DeferredDiscoveryRESTMapper
	dyn      dynamic.Interface
	raw      rest.Interface // the API server's root, for lists as tables

	mu   sync.Mutex
	read time.Time // when discovery was last read, or forgotten
}

// rediscover forgets what discovery found, so that the next lookup reads
// it again, and reports whether it did: a type the API server has gained
// since (a CRD installed after the first lookup) is then found, as kubectl
// finds it by invalidating its cache on a miss. A long-running server
// would otherwise never see it; the mapper's own retry only covers a
// cache that was never filled. Misses make it happen at most once per
// rediscoverEvery, so a caller asking for unknown types cannot turn each
// request into a discovery of the whole API.
func (rt *resourceTypes) rediscover() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if time.Since(rt.read) < rediscoverEvery {
		return false
	}
	rt.deferred.Reset()
	rt.read = time.Now()
	return true
}

func (c *Client) resources() (*resourceTypes, error) {
	rt := &c.resourceTypes
	rt.once.Do(func() {
		dc, err := discovery.NewDiscoveryClientForConfig(c.rest)
		if err != nil {
			rt.err = fmt.Errorf("create discovery client: %w", err)
			return
		}
		rt.raw = dc.RESTClient()
		cached := memory.NewMemCacheClient(dc)
		rt.cached = cached
		rt.deferred = restmapper.NewDeferredDiscoveryRESTMapper(cached)
		rt.mapper = restmapper.NewShortcutExpander(rt.deferred, cached, nil)
		rt.read = time.Now()
		if rt.dyn, err = dynamic.NewForConfig(c.rest); err != nil {
			rt.err = fmt.Errorf("create dynamic client: %w", err)
		}
	})
	return rt, rt.err
}

// ResourceTypeError reports a resource type that is unknown or that the
// generic operations do not serve.
type ResourceTypeError struct {
	Type   string
	Reason string
}

func (e *ResourceTypeError) Error() string {
	return fmt.Sprintf("resource type %q: %s", e.Type, e.Reason)
}

// mapping resolves a resource type as kubectl does ("pods", "po",
// "deployments.apps", "Deployment", "deployments.v1.apps"), refusing the
// restricted ones as if they did not exist, and in namespaced mode the
// cluster-scoped ones.
func (c *Client) mapping(typ string) (*meta.RESTMapping, error) {
	rt, err := c.resources()
	if err != nil {
		return nil, err
	}
	t := strings.TrimSpace(typ)
	if t == "" || strings.ContainsAny(t, "/ ") {
		return nil, &InputError{Field: "resource", Reason: fmt.Sprintf("%q is not a resource type (such as pods, deployments.apps or Deployment)", typ)}
	}
	m, err := rt.lookup(t)
	if err != nil && rt.rediscover() {
		m, err = rt.lookup(t)
	}
	if err != nil || restricted(m.Resource.GroupResource()) {
		// A restricted type is answered as an unknown one, suggestions
		// and all, so that nothing tells it exists.
		return nil, &ResourceTypeError{Type: typ, Reason: "not found on this API server" + didYouMean(rt.similar(t, c.cfg.Mode == ModeNamespaced))}
	}
	if c.cfg.Mode == ModeNamespaced && m.Scope.Name() != meta.RESTScopeNameNamespace {
		return nil, &ResourceTypeError{Type: typ, Reason: fmt.Sprintf("%s is cluster-scoped, outside this server's scope: namespaced mode allows only namespace %q", m.Resource.GroupResource(), c.cfg.Namespace)}
	}
	return m, nil
}

// maxSuggestions bounds the types a "not found" suggests.
const maxSuggestions = 5

// similar returns the types, as resource.group names, whose names are
// close to t's (a typo, a plural or kind written differently, a part of
// the name), as kubectl's users expect to be told and k-mcp tells them;
// never a restricted one, and in namespaced mode only namespaced ones.
func (rt *resourceTypes) similar(t string, namespacedOnly bool) []string {
	want, _, _ := strings.Cut(strings.ToLower(t), ".")
	seen := map[string]bool{}
	var out []string
	for gv, r := range rt.offered(namespacedOnly) {
		gr := schema.GroupResource{Group: gv.Group, Resource: r.Name}.String()
		if seen[gr] {
			continue
		}
		for _, name := range append([]string{r.Name, r.SingularName, strings.ToLower(r.Kind)}, r.ShortNames...) {
			if nearName(want, name) {
				seen[gr] = true
				out = append(out, gr)
				break
			}
		}
	}
	slices.Sort(out)
	if len(out) > maxSuggestions {
		out = out[:maxSuggestions]
	}
	return out
}

// offered yields the types the generic operations serve, each in its
// group's preferred version, as discovery last found them: no
// subresource, no restricted type, and in namespaced mode no
// cluster-scoped one.
func (rt *resourceTypes) offered(namespacedOnly bool) iter.Seq2[schema.GroupVersion, metav1.APIResource] {
	return func(yield func(schema.GroupVersion, metav1.APIResource) bool) {
		lists, _ := rt.cached.ServerPreferredResources() // what was found, if partly
		for _, l := range lists {
			gv, err := schema.ParseGroupVersion(l.GroupVersion)
			if err != nil {
				continue
			}
			for _, r := range l.APIResources {
				if strings.Contains(r.Name, "/") || restricted(schema.GroupResource{Group: gv.Group, Resource: r.Name}) || namespacedOnly && !r.Namespaced {
					continue
				}
				if !yield(gv, r) {
					return
				}
			}
		}
	}
}

// servedAs is a "not found" message's tail for a manifest's kind asked
// for under an apiVersion the API server does not serve it under (an
// outdated one, such as extensions/v1beta1 for Ingress, is what agents
// write most): the apiVersions it is served under, in the kind's own
// spelling. Never for a restricted type, and in namespaced mode only for
// namespaced ones.
func (rt *resourceTypes) servedAs(kind string, namespacedOnly bool) string {
	spelled, seen := "", map[schema.GroupVersion]bool{}
	var versions []string
	for gv, r := range rt.offered(namespacedOnly) {
		if strings.EqualFold(r.Kind, kind) && !seen[gv] {
			seen[gv] = true
			spelled = r.Kind
			versions = append(versions, gv.String())
		}
	}
	if len(versions) == 0 {
		return ""
	}
	slices.Sort(versions)
	return fmt.Sprintf("; %s is served as %s", spelled, strings.Join(versions, ", "))
}

// nearName reports whether name is near enough to want to suggest it: a few
// edits away, or one of the two containing the other.
func nearName(want, name string) bool {
	if name == "" || len(want) < 2 {
		return false
	}
	if len(want) >= 3 && len(name) >= 3 && (strings.Contains(name, want) || strings.Contains(want, name)) {
		return true
	}
	limit := 1
	if len(want) >= 6 {
		limit = 2
	}
	return editDistance(want, name, limit) <= limit
}

// editDistance is the Levenshtein distance between a and b, or limit+1
// when it is more than limit.
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d > limit || -d > limit {
		return limit + 1
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		best := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			best = min(best, cur[j])
		}
		if best > limit {
			return limit + 1
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// didYouMean is a "not found" message's tail naming the suggestions.
func didYouMean(types []string) string {
	if len(types) == 0 {
		return ""
	}
	return "; did you mean " + strings.Join(types, ", ") + "?"
}

// lookup resolves t, a resource type as kubectl takes it, from what
// discovery found.
func (rt *resourceTypes) lookup(t string) (*meta.RESTMapping, error) {
	var gvk schema.GroupVersionKind
	var err error
	full, gr := schema.ParseResourceArg(strings.ToLower(t))
	if full != nil {
		gvk, err = rt.mapper.KindFor(*full)
	}
	if full == nil || err != nil {
		gvk, err = rt.mapper.KindFor(gr.WithVersion(""))
	}
	if err != nil {
		// A kind, as written in manifests ("Deployment", "Deployment.apps").
		m, kerr := rt.mapper.RESTMapping(schema.ParseGroupKind(t))
		if kerr != nil {
			return nil, kerr
		}
		gvk = m.GroupVersionKind
	}
	return rt.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
}

// CallerError refuses a generic resource operation to a caller that
// acts for a verified subject.
type CallerError struct{ Op, Subject string }

func (e *CallerError) Error() string {
	return fmt.Sprintf("%s acts with the server's own Kubernetes identity, which cannot keep to %s's workspaces; with a token it needs the caller's own credentials for Kubernetes", e.Op, e.Subject)
}

// forServerOnly refuses the generic operations to a caller identified by
// a token when they would act with the server's identity, which the
// workspace and pod tools keep to the caller's own objects and these
// cannot; with the caller's own token (ForToken), RBAC keeps them.
func (c *Client) forServerOnly(ctx context.Context, op string) error {
	if caller, ok := CallerFrom(ctx); ok && !c.callerToken {
		return &CallerError{Op: op, Subject: caller.Subject}
	}
	return nil
}

// namespaceOf is the namespace an operation on m's objects runs in: the
// requested one or the default, within the scope, for a namespaced type;
// "" for a cluster-scoped one, which ignores it as kubectl ignores -n.
func (c *Client) namespaceOf(m *meta.RESTMapping, requested string) (string, error) {
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		return "", nil
	}
	return c.Namespace(requested)
}

// objects is the dynamic client of m's objects in ns ("": cluster-scoped),
// once mapping has resolved m.
func (c *Client) objects(m *meta.RESTMapping, ns string) dynamic.ResourceInterface {
	r := c.resourceTypes.dyn.Resource(m.Resource)
	if ns == "" {
		return r
	}
	return r.Namespace(ns)
}

// ResourceQuery selects the objects ListResources returns.
type ResourceQuery struct {
	// Type is the resource type, as kubectl takes it.
	Type string
	// Namespace defaults to the client's; it is ignored for cluster-scoped
	// types, as kubectl ignores -n.
	Namespace string
	// AllNamespaces lists a namespaced type in every namespace, as
	// kubectl's -A; cluster mode only.
	AllNamespaces bool
	LabelSelector string
	FieldSelector string
	// Limit bounds the objects returned (0: all).
	Limit int64
}

// ResourceItem is one listed object.
type ResourceItem struct {
	Name      string
	Namespace string
	Created   time.Time
	Labels    map[string]string
	// Cells are the object's values of the list's Columns.
	Cells []any
}

// ResourceList is what ListResources found.
type ResourceList struct {
	// Resource is the type's resource.group name, Kind its kind.
	Resource   string
	Kind       string
	Namespaced bool
	// Namespace is where the objects were listed; empty for cluster-scoped
	// types and for all namespaces.
	Namespace string
	// Columns are what kubectl get prints of each object besides its
	// name, as the API server renders them for the type (a CRD's
	// additionalPrinterColumns included): Ready, Status, Age and so on.
	Columns []string
	Items   []ResourceItem
	// More says the list stopped at the limit.
	More bool
}

// ListResources lists the objects of any unrestricted resource type.
func (c *Client) ListResources(ctx context.Context, q ResourceQuery) (*ResourceList, error) {
	if err := c.forServerOnly(ctx, "resource_list"); err != nil {
		return nil, err
	}
	m, err := c.mapping(q.Type)
	if err != nil {
		return nil, err
	}
	if q.Limit < 0 {
		return nil, &InputError{Field: "limit", Reason: fmt.Sprintf("must not be negative, got %d", q.Limit)}
	}
	namespaced := m.Scope.Name() == meta.RESTScopeNameNamespace
	var ns string
	switch {
	case q.AllNamespaces && q.Namespace != "":
		return nil, inputErr("allNamespaces", "give a namespace or all namespaces, not both")
	case q.AllNamespaces && c.cfg.Mode == ModeNamespaced:
		return nil, inputErr("allNamespaces", "all namespaces are outside this server's scope: namespaced mode allows only %q", c.cfg.Namespace)
	case !q.AllNamespaces:
		if ns, err = c.namespaceOf(m, q.Namespace); err != nil {
			return nil, err
		}
	}
	out := &ResourceList{Resource: m.Resource.GroupResource().String(), Kind: m.GroupVersionKind.Kind, Namespaced: namespaced, Namespace: ns}
	if err := c.listTable(ctx, m, ns, q, out); err != nil {
		return nil, fmt.Errorf("list %s: %w", out.Resource, err)
	}
	return out, nil
}

// tableAccept asks for a list as kubectl get asks for it: as the API
// server's table of printed columns, or else as a plain list.
const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"

// listTable lists m's objects in ns ("": all, or cluster-scoped) into out,
// with the columns the API server prints for them when it renders the
// type as a table.
func (c *Client) listTable(ctx context.Context, m *meta.RESTMapping, ns string, q ResourceQuery, out *ResourceList) error {
	gv := m.Resource.GroupVersion()
	path := "/apis/" + gv.Group + "/" + gv.Version
	if gv.Group == "" {
		path = "/api/" + gv.Version
	}
	if ns != "" {
		path += "/namespaces/" + ns
	}
	req := c.resourceTypes.raw.Get().AbsPath(path, m.Resource.Resource).SetHeader("Accept", tableAccept).
		Param("includeObject", string(metav1.IncludeMetadata))
	if q.LabelSelector != "" {
		req = req.Param("labelSelector", q.LabelSelector)
	}
	if q.FieldSelector != "" {
		req = req.Param("fieldSelector", q.FieldSelector)
	}
	if q.Limit > 0 {
		req = req.Param("limit", fmt.Sprint(q.Limit))
	}
	body, err := req.Do(ctx).Raw()
	if err != nil {
		// This client decodes no Status of its own: the API server's
		// answer (forbidden, a bad selector) is taken from the body.
		var st metav1.Status
		if json.Unmarshal(body, &st) == nil && st.Kind == "Status" && st.Message != "" {
			return &apierrors.StatusError{ErrStatus: st}
		}
		return err
	}
	return decodeList(body, out)
}

// decodeList decodes a list the API server answered into out: a Table of
// printed columns, or a plain list (from an aggregated API server that
// renders no table).
func decodeList(body []byte, out *ResourceList) error {
	var kind struct{ Kind string }
	if err := json.Unmarshal(body, &kind); err != nil {
		return fmt.Errorf("decode the list: %w", err)
	}
	if kind.Kind != "Table" {
		var list unstructured.UnstructuredList
		if err := list.UnmarshalJSON(body); err != nil {
			return fmt.Errorf("decode the list: %w", err)
		}
		for _, o := range list.Items {
			out.Items = append(out.Items, ResourceItem{Name: o.GetName(), Namespace: o.GetNamespace(), Created: o.GetCreationTimestamp().Time, Labels: o.GetLabels()})
		}
		out.More = list.GetContinue() != ""
		return nil
	}
	var table metav1.Table
	if err := json.Unmarshal(body, &table); err != nil {
		return fmt.Errorf("decode the table: %w", err)
	}
	var shown []int // the columns kubectl get prints without -o wide, but the name
	for i, col := range table.ColumnDefinitions {
		if col.Priority == 0 && col.Format != "name" {
			shown = append(shown, i)
			out.Columns = append(out.Columns, col.Name)
		}
	}
	for _, row := range table.Rows {
		var o metav1.PartialObjectMetadata
		if err := json.Unmarshal(row.Object.Raw, &o); err != nil {
			return fmt.Errorf("decode a row's object: %w", err)
		}
		it := ResourceItem{Name: o.Name, Namespace: o.Namespace, Created: o.CreationTimestamp.Time, Labels: o.Labels}
		for _, i := range shown {
			var cell any
			if i < len(row.Cells) {
				cell = row.Cells[i]
			}
			it.Cells = append(it.Cells, cell)
		}
		out.Items = append(out.Items, it)
	}
	out.More = table.Continue != ""
	return nil
}

// GetResource returns one object of any unrestricted resource type, without
// its managed fields.
func (c *Client) GetResource(ctx context.Context, typ, namespace, name string) (*unstructured.Unstructured, error) {
	if err := c.forServerOnly(ctx, "resource_get"); err != nil {
		return nil, err
	}
	m, err := c.mapping(typ)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(name) == "" {
		return nil, &InputError{Field: "name", Reason: "must not be empty"}
	}
	ns, err := c.namespaceOf(m, namespace)
	if err != nil {
		return nil, err
	}
	o, err := c.objects(m, ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, &NotFoundError{Kind: m.GroupVersionKind.Kind, Namespace: ns, Name: name}
	}
	if err != nil {
		return nil, fmt.Errorf("get %s %s: %w", m.Resource.GroupResource(), name, err)
	}
	unstructured.RemoveNestedField(o.Object, "metadata", "managedFields")
	return o, nil
}

// ObjectEvent is one event about an object, as kubectl describe lists it.
type ObjectEvent struct {
	Type, Reason, Message string
	// From is the component that reported it.
	From string
	// Count is how many times it happened; Last when it last did.
	Count int32
	Last  time.Time
}

// maxEvents bounds the events EventsFor returns: the latest.
const maxEvents = 50

// EventsFor returns the events about o, an object GetResource returned,
// oldest first, as kubectl describe shows them: those whose involved
// object has o's UID, in o's namespace (in all, for a cluster-scoped
// object, whose events go where their reporters put them).
func (c *Client) EventsFor(ctx context.Context, o *unstructured.Unstructured) ([]ObjectEvent, error) {
	if err := c.forServerOnly(ctx, "resource_get"); err != nil {
		return nil, err
	}
	ns := o.GetNamespace()
	if ns == "" && c.cfg.Mode == ModeNamespaced {
		return nil, inputErr("events", "the events of a cluster-scoped object are outside this server's scope: namespaced mode allows only %q", c.cfg.Namespace)
	}
	if ns != "" {
		var err error
		if ns, err = c.Namespace(ns); err != nil {
			return nil, err
		}
	}
	list, err := c.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.uid=" + string(o.GetUID())})
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	out := make([]ObjectEvent, 0, len(list.Items))
	for _, e := range list.Items {
		last := e.LastTimestamp.Time
		if last.IsZero() {
			last = e.EventTime.Time
		}
		if last.IsZero() {
			last = e.CreationTimestamp.Time
		}
		from := e.Source.Component
		if from == "" {
			from = e.ReportingController
		}
		count := e.Count
		if count == 0 {
			count = 1
		}
		out = append(out, ObjectEvent{Type: e.Type, Reason: e.Reason, Message: e.Message, From: from, Count: count, Last: last})
	}
	slices.SortStableFunc(out, func(a, b ObjectEvent) int { return a.Last.Compare(b.Last) })
	if len(out) > maxEvents {
		out = out[len(out)-maxEvents:]
	}
	return out, nil
}

// Applied is the outcome of applying one object.
type Applied struct {
	APIVersion, Kind, Namespace, Name string
	// Action is created or configured (or, in a dry run, what it would be).
	Action string
	// Unchecked is set in a dry run for an object in a namespace the
	// manifest creates, which the API server cannot check before the
	// namespace exists.
	Unchecked bool
}

// namespaces is the resource of Namespace objects.
var namespaces = schema.GroupResource{Resource: "namespaces"}

// ApplyResources applies the objects of a YAML or JSON manifest (documents
// separated by ---) with server-side apply, as nocrd's field manager,
// without forcing conflicts. Every object is first applied as a
// server-side dry run, and none is applied unless all pass, so a manifest
// with one bad object changes nothing. With dryRun, that first pass is all.
//
// A manifest may create a namespace and objects in it, in any order, as
// kubectl apply takes it. Those objects can be checked only once their
// namespace exists: the new namespaces are applied first, then the
// objects in them are checked, and if one fails the namespaces are
// removed again (a dry run reports them Unchecked).
func (c *Client) ApplyResources(ctx context.Context, manifest string, dryRun bool) ([]Applied, error) {
	if err := c.forServerOnly(ctx, "resource_apply"); err != nil {
		return nil, err
	}
	objs, err := decodeManifest(manifest)
	if err != nil {
		return nil, err
	}
	targets := make([]applyTarget, 0, len(objs))
	for i, o := range objs {
		m, ns, err := c.applyMapping(o)
		if err != nil {
			return nil, fmt.Errorf("document %d (%s %s): %w", i+1, o.GetKind(), o.GetName(), err)
		}
		if ns != "" {
			o.SetNamespace(ns)
		}
		targets = append(targets, applyTarget{doc: i + 1, ri: c.objects(m, ns), gr: m.Resource.GroupResource(), obj: o,
			out: Applied{APIVersion: o.GetAPIVersion(), Kind: o.GetKind(), Namespace: ns, Name: o.GetName()}})
	}
	newNamespaces := map[string]bool{}
	for i := range targets {
		t := &targets[i]
		cur, err := t.ri.Get(ctx, t.obj.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			t.out.Action = "created"
			if t.gr == namespaces {
				newNamespaces[t.obj.GetName()] = true
			}
		case err != nil:
			return nil, t.fail(err)
		case t.gr == configMaps && cur.GetLabels()[LabelPodTemplate] != "":
			// Applied over, a template's spec would skip its check too.
			return nil, t.fail(errTemplateApply)
		default:
			t.out.Action = "configured"
		}
	}
	for i := range targets {
		t := &targets[i]
		if newNamespaces[t.out.Namespace] {
			t.out.Unchecked = true // once its namespace exists
			continue
		}
		if err := t.check(ctx); err != nil {
			return nil, err
		}
	}
	out := make([]Applied, 0, len(targets))
	if dryRun {
		for _, t := range targets {
			out = append(out, t.out)
		}
		return out, nil
	}
	if len(newNamespaces) > 0 {
		if err := c.applyNewNamespaces(ctx, targets, newNamespaces); err != nil {
			return nil, err
		}
	}
	for _, t := range targets {
		if !(t.gr == namespaces && newNamespaces[t.obj.GetName()]) {
			if err := t.apply(ctx); err != nil {
				return out, fmt.Errorf("%w (documents before it were applied)", err)
			}
		}
		t.out.Unchecked = false
		out = append(out, t.out)
	}
	return out, nil
}

// applyTarget is one object of a manifest being applied.
type applyTarget struct {
	doc int // its place in the manifest, from 1
	ri  dynamic.ResourceInterface
	gr  schema.GroupResource
	obj *unstructured.Unstructured
	out Applied
}

func (t *applyTarget) fail(err error) error {
	return fmt.Errorf("document %d (%s %s): %w", t.doc, t.out.Kind, t.out.Name, err)
}

// check applies t as a server-side dry run.
func (t *applyTarget) check(ctx context.Context) error {
	if _, err := t.ri.Apply(ctx, t.obj.GetName(), t.obj, metav1.ApplyOptions{FieldManager: FieldManager, DryRun: []string{metav1.DryRunAll}}); err != nil {
		return fmt.Errorf("document %d (%s %s) fails a dry run, so nothing was applied: %w", t.doc, t.out.Kind, t.out.Name, err)
	}
	return nil
}

func (t *applyTarget) apply(ctx context.Context) error {
	_, err := t.ri.Apply(ctx, t.obj.GetName(), t.obj, metav1.ApplyOptions{FieldManager: FieldManager})
	if err != nil {
		return t.fail(err)
	}
	return nil
}

// applyNewNamespaces makes the namespaces a manifest creates, then
// checks the objects that go in them. If one fails, the namespaces are
// deleted again. Each is made with a create of its name alone, then
// applied: a create says whether this call made it (a namespace someone
// else created in the meantime is configured by the apply and never
// deleted), and leaves every field the manifest sets to the apply.
func (c *Client) applyNewNamespaces(ctx context.Context, targets []applyTarget, created map[string]bool) (err error) {
	type made struct {
		name string
		uid  types.UID
	}
	var ours []made
	var ri dynamic.ResourceInterface
	defer func() {
		if err == nil {
			return
		}
		for _, ns := range ours {
			derr := ri.Delete(context.WithoutCancel(ctx), ns.name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &ns.uid}})
			if derr != nil && !apierrors.IsNotFound(derr) {
				err = fmt.Errorf("%w; and namespace %s, created for the manifest, could not be deleted again: %v", err, ns.name, derr)
			}
		}
	}()
	for _, t := range targets {
		if t.gr != namespaces || !created[t.obj.GetName()] {
			continue
		}
		ri = t.ri
		bare := &unstructured.Unstructured{}
		bare.SetAPIVersion("v1")
		bare.SetKind("Namespace")
		bare.SetName(t.obj.GetName())
		ns, err := t.ri.Create(ctx, bare, metav1.CreateOptions{FieldManager: FieldManager})
		switch {
		case err == nil:
			ours = append(ours, made{ns.GetName(), ns.GetUID()})
		case !apierrors.IsAlreadyExists(err):
			return fmt.Errorf("%w, so nothing was applied", t.fail(err))
		}
		if err := t.apply(ctx); err != nil {
			return fmt.Errorf("%w, so nothing was applied", err)
		}
	}
	for i := range targets {
		if t := &targets[i]; t.out.Unchecked {
			if err := t.check(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeManifest splits manifest into objects, each with an apiVersion,
// a kind and a name.
func decodeManifest(manifest string) ([]*unstructured.Unstructured, error) {
	if strings.TrimSpace(manifest) == "" {
		return nil, &InputError{Field: "manifest", Reason: "must not be empty"}
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(manifest)), 4096)
	var objs []*unstructured.Unstructured
	for doc := 1; ; doc++ {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, &InputError{Field: "manifest", Reason: fmt.Sprintf("document %d is not YAML or JSON: %v", doc, err)}
		}
		if m == nil {
			continue // an empty document, as between two ---
		}
		o := &unstructured.Unstructured{Object: m}
		switch {
		case o.GetAPIVersion() == "" || o.GetKind() == "":
			return nil, &InputError{Field: "manifest", Reason: fmt.Sprintf("document %d has no apiVersion or kind", doc)}
		case strings.HasSuffix(o.GetKind(), "List") && o.Object["items"] != nil:
			return nil, &InputError{Field: "manifest", Reason: fmt.Sprintf("document %d is a %s: give its items as documents of their own", doc, o.GetKind())}
		case o.GetName() == "":
			return nil, &InputError{Field: "manifest", Reason: fmt.Sprintf("document %d (%s) has no metadata.name (generateName cannot be applied)", doc, o.GetKind())}
		}
		objs = append(objs, o)
		if len(objs) > maxApplyDocuments {
			return nil, &InputError{Field: "manifest", Reason: fmt.Sprintf("more than %d objects", maxApplyDocuments)}
		}
	}
	if len(objs) == 0 {
		return nil, &InputError{Field: "manifest", Reason: "has no objects"}
	}
	return objs, nil
}

// applyMapping resolves an object's type and the namespace it goes in,
// refusing what the generic apply must not touch.
func (c *Client) applyMapping(o *unstructured.Unstructured) (*meta.RESTMapping, string, error) {
	gvk := o.GroupVersionKind()
	rt, err := c.resources()
	if err != nil {
		return nil, "", err
	}
	m, err := rt.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil && rt.rediscover() {
		m, err = rt.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil || restricted(m.Resource.GroupResource()) {
		// As in mapping, a restricted kind reads as an unknown one.
		return nil, "", &ResourceTypeError{Type: o.GetAPIVersion() + " " + o.GetKind(), Reason: "not found on this API server" + rt.servedAs(gvk.Kind, c.cfg.Mode == ModeNamespaced)}
	}
	gr := m.Resource.GroupResource()
	switch {
	case gr == schema.GroupResource{Resource: "pods"}:
		return nil, "", &InputError{Field: "manifest", Reason: "pods are made with create_pod, create_pod_from_template or spawn_workspace, which validate and admit them"}
	case gr == configMaps && o.GetLabels()[LabelPodTemplate] != "":
		return nil, "", errTemplateApply
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		if c.cfg.Mode == ModeNamespaced {
			return nil, "", &ResourceTypeError{Type: o.GetKind(), Reason: fmt.Sprintf("%s is cluster-scoped, outside this server's scope: namespaced mode allows only namespace %q", gr, c.cfg.Namespace)}
		}
		if o.GetNamespace() != "" {
			return nil, "", &InputError{Field: "manifest", Reason: fmt.Sprintf("%s is cluster-scoped and takes no metadata.namespace", gr)}
		}
		return m, "", nil
	}
	ns, err := c.Namespace(o.GetNamespace())
	return m, ns, err
}
