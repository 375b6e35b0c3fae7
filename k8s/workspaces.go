package k8s

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
)

// Workspace labels and spawner annotations: no-crd's, so workspaces and
// templates made for it keep working.
const (
	LabelType          = "nogoo9/type"
	TypeWorkspace      = "workspace"
	LabelWorkspaceID   = "nogoo9/workspace-id"
	LabelUserSub       = "nogoo9/user-sub"
	AnnotationOwner    = "nogoo9/owner"
	AnnotationTemplate = "nogoo9/template-ref"

	AnnotationRequiredContext    = "nogoo9/required-context"
	AnnotationInitImage          = "nogoo9/init-image"
	AnnotationInitCommand        = "nogoo9/init-command"
	AnnotationPreStopCommand     = "nogoo9/pre-stop-command"
	AnnotationPreStopSidecar     = "nogoo9/pre-stop-sidecar-image"
	AnnotationDefaultGracePeriod = "nogoo9/default-grace-period"
	AnnotationIAMRoleARN         = "nogoo9/iam-role-arn"
	AnnotationWorkspacePort      = "nogoo9/workspace-port"
	AnnotationTTL                = "nogoo9/ttl"
	AnnotationExpiresAt          = "nogoo9/expires-at"

	// AnnotationEKSRoleARN is what EKS reads on a ServiceAccount.
	AnnotationEKSRoleARN = "eks.amazonaws.com/role-arn"

	// Anonymous owns workspaces spawned without an identity.
	Anonymous = "anonymous"
	// InitContainerName and PreStopSidecarName are the containers the
	// spawner adds.
	InitContainerName  = "spawner-init"
	PreStopSidecarName = "pre-stop-sidecar"
	// DefaultPreStopGrace is the grace period when a pre-stop command is set
	// and the template names none.
	DefaultPreStopGrace = 60
)

// SpawnRequest describes a workspace to spawn.
type SpawnRequest struct {
	// ID identifies the workspace in its namespace; it must be a valid label
	// value (at most 63 letters, digits, '-', '_' or '.').
	ID string
	// TemplateRef names a template; or give Spec (and Annotations) inline.
	TemplateRef string
	Spec        *corev1.PodSpec
	// Annotations are spawner annotations; they override the template's.
	Annotations map[string]string
	Namespace   string
	// Context values satisfy nogoo9/required-context and become environment
	// variables of the workspace's containers.
	Context map[string]string
	// Owner is the verified subject; empty means Anonymous.
	Owner string
	// PodAnnotations are extra annotations for the pod (for a service mesh,
	// a metrics scraper, ...). Keys under nogoo9/ are nocrd's and refused.
	PodAnnotations map[string]string
	// Claims are the owner's token claims, shown to admission policies.
	Claims map[string]any
}

// Workspace is a workspace pod seen through its labels.
type Workspace struct {
	ID        string
	PodName   string
	Namespace string
	Owner     string
	Phase     string
	Ready     bool
	PodIP     string
	Template  string
	Created   time.Time
	// Existing is set by SpawnWorkspace when the workspace already existed.
	Existing bool

	// pod is the object this view was read from, so WaitReady can watch
	// from it without reading it again.
	pod *corev1.Pod
}

// OwnershipError is returned when a caller acts on another owner's workspace.
// Pod names the pod when the operation was on the pod rather than the
// workspace.
type OwnershipError struct{ ID, Namespace, Pod string }

func (e *OwnershipError) Error() string {
	if e.Pod != "" {
		return fmt.Sprintf("pod %s in %s is workspace %s, which belongs to another owner", e.Pod, e.Namespace, e.ID)
	}
	return fmt.Sprintf("workspace %s in %s belongs to another owner", e.ID, e.Namespace)
}

// SpawnError says which step of a spawn failed; everything the spawn had
// created was removed.
type SpawnError struct {
	Step string
	Err  error
}

func (e *SpawnError) Error() string { return fmt.Sprintf("spawn failed at %s: %v", e.Step, e.Err) }
func (e *SpawnError) Unwrap() error { return e.Err }

func ownerOf(owner string) string {
	if owner == "" {
		return Anonymous
	}
	return owner
}

// OwnerLabel is the nogoo9/user-sub label value for an owner: the owner
// itself when it is a valid label value, else "sha256-" and a prefix of its
// hash. The exact owner is kept in the nogoo9/owner annotation.
func OwnerLabel(owner string) string {
	owner = ownerOf(owner)
	if len(validation.IsValidLabelValue(owner)) == 0 {
		return owner
	}
	sum := sha256.Sum256([]byte(owner))
	return "sha256-" + hex.EncodeToString(sum[:])[:40]
}

var dnsUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// WorkspacePodName is the pod name of a workspace: ws-<owner>-<id>, as in
// no-crd, when both parts are already DNS-safe and the result is short;
// otherwise a sanitized, shortened form followed by a hash of the exact
// owner and id, so that no two owners' workspaces share a name.
func WorkspacePodName(owner, id string) string {
	owner = ownerOf(owner)
	plain := "ws-" + owner + "-" + id
	simple := func(s string) bool { return s != "" && !strings.Contains(s, "-") && dnsUnsafe.FindString(s) == "" }
	if simple(owner) && len(plain) <= 63 && len(validation.IsDNS1123Label(plain)) == 0 && (simple(id) || owner == Anonymous) {
		return plain
	}
	sum := sha256.Sum256([]byte(owner + "\x00" + id))
	clean := func(s string, n int) string {
		s = strings.Trim(dnsUnsafe.ReplaceAllString(strings.ToLower(s), "-"), "-")
		if len(s) > n {
			s = strings.Trim(s[:n], "-")
		}
		return s
	}
	parts := []string{"ws"}
	for _, p := range []string{clean(owner, 20), clean(id, 20)} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(append(parts, hex.EncodeToString(sum[:])[:10]), "-")
}

// BuildWorkspacePod makes the pod for a workspace from its spec and spawner
// annotations. It is pure: no API call. serviceAccount, when not empty, is
// the ServiceAccount the pod runs as (made for nogoo9/iam-role-arn).
func BuildWorkspacePod(req SpawnRequest, spec *corev1.PodSpec, annotations map[string]string, template, serviceAccount string, now time.Time) (*corev1.Pod, error) {
	owner := ownerOf(req.Owner)
	// The spec as given must be sound before the spawner builds on it (it
	// adds to the first container); the result is checked again below.
	if err := CheckPodSpec("spec", spec); err != nil {
		return nil, err
	}
	if missing := missingContext(annotations[AnnotationRequiredContext], req.Context); len(missing) > 0 {
		return nil, inputErr("context", "missing required context keys %s (required by %s)", strings.Join(missing, ", "), AnnotationRequiredContext)
	}
	spec = spec.DeepCopy()
	env := contextEnv(req.Context)
	for i := range spec.Containers {
		spec.Containers[i].Env = mergeEnv(spec.Containers[i].Env, env)
	}

	var mounts []corev1.VolumeMount
	if len(spec.Containers) > 0 {
		mounts = spec.Containers[0].VolumeMounts
	}
	if img := annotations[AnnotationInitImage]; img != "" {
		cmd := annotations[AnnotationInitCommand]
		if cmd == "" {
			return nil, inputErr("annotations", "%s needs %s", AnnotationInitImage, AnnotationInitCommand)
		}
		spec.InitContainers = append(spec.InitContainers, corev1.Container{
			Name: InitContainerName, Image: img, Command: []string{"/bin/sh", "-c", cmd},
			Env: env, VolumeMounts: slices.Clone(mounts),
		})
	} else if annotations[AnnotationInitCommand] != "" {
		return nil, inputErr("annotations", "%s needs %s", AnnotationInitCommand, AnnotationInitImage)
	}

	preStop := annotations[AnnotationPreStopCommand]
	if preStop != "" {
		hook := &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", preStop}}}}
		if img := annotations[AnnotationPreStopSidecar]; img != "" {
			spec.Containers = append(spec.Containers, corev1.Container{
				Name: PreStopSidecarName, Image: img,
				// The sidecar idles until termination, when its hook runs.
				Command:   []string{"/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"},
				Env:       env,
				Lifecycle: hook, VolumeMounts: slices.Clone(mounts),
			})
		} else {
			spec.Containers[0].Lifecycle = hook
		}
	} else if annotations[AnnotationPreStopSidecar] != "" {
		return nil, inputErr("annotations", "%s needs %s", AnnotationPreStopSidecar, AnnotationPreStopCommand)
	}

	if g := annotations[AnnotationDefaultGracePeriod]; g != "" {
		secs, err := strconv.ParseInt(g, 10, 64)
		if err != nil || secs < 0 {
			return nil, inputErr("annotations", "%s must be a whole number of seconds, got %q", AnnotationDefaultGracePeriod, g)
		}
		spec.TerminationGracePeriodSeconds = &secs
	} else if preStop != "" {
		secs := int64(DefaultPreStopGrace)
		spec.TerminationGracePeriodSeconds = &secs
	}
	if serviceAccount != "" {
		spec.ServiceAccountName = serviceAccount
	}
	if err := CheckPodSpec("spec", spec); err != nil {
		return nil, err
	}

	podAnn := map[string]string{}
	for k, v := range req.PodAnnotations {
		if strings.HasPrefix(k, "nogoo9/") {
			return nil, inputErr("podAnnotations", "%s: keys under nogoo9/ are set by nocrd", k)
		}
		podAnn[k] = v
	}
	podAnn[AnnotationOwner] = owner
	if template != "" {
		podAnn[AnnotationTemplate] = template
	}
	if p := annotations[AnnotationWorkspacePort]; p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, inputErr("annotations", "%s must be a port between 1 and 65535, got %q", AnnotationWorkspacePort, p)
		}
		podAnn[AnnotationWorkspacePort] = p
	}
	if ttl := annotations[AnnotationTTL]; ttl != "" {
		d, err := time.ParseDuration(ttl)
		if err != nil || d <= 0 {
			return nil, inputErr("annotations", "%s must be a positive duration such as 2h, got %q", AnnotationTTL, ttl)
		}
		podAnn[AnnotationTTL] = ttl
		podAnn[AnnotationExpiresAt] = now.Add(d).UTC().Format(time.RFC3339)
	}
	if arn := annotations[AnnotationIAMRoleARN]; arn != "" {
		podAnn[AnnotationIAMRoleARN] = arn
	}
	labels := map[string]string{LabelType: TypeWorkspace, LabelWorkspaceID: req.ID, LabelUserSub: OwnerLabel(owner)}
	if template != "" {
		labels[LabelTemplate] = template[strings.LastIndexByte(template, '/')+1:]
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: WorkspacePodName(owner, req.ID), Labels: labels, Annotations: podAnn},
		Spec:       *spec,
	}, nil
}

func missingContext(required string, ctx map[string]string) []string {
	var missing []string
	for _, k := range strings.Split(required, ",") {
		if k = strings.TrimSpace(k); k != "" && ctx[k] == "" {
			missing = append(missing, k)
		}
	}
	return missing
}

func contextEnv(ctx map[string]string) []corev1.EnvVar {
	keys := slices.Sorted(maps.Keys(ctx))
	env := make([]corev1.EnvVar, 0, len(keys))
	for _, k := range keys {
		env = append(env, corev1.EnvVar{Name: k, Value: ctx[k]})
	}
	return env
}

// mergeEnv sets each of add in env, replacing a variable of the same name.
func mergeEnv(env, add []corev1.EnvVar) []corev1.EnvVar {
	out := slices.Clone(env)
	for _, a := range add {
		if i := slices.IndexFunc(out, func(e corev1.EnvVar) bool { return e.Name == a.Name }); i >= 0 {
			out[i] = a
		} else {
			out = append(out, a)
		}
	}
	return out
}

// podOwner is the exact owner of a workspace pod: its nogoo9/owner
// annotation, or for a pod made without one (not by nocrd) its
// nogoo9/user-sub label. The label alone does not name one owner: it is
// a hash for an owner that is not a valid label value, and another owner
// may be that hash itself, so a selector on it is followed by this check.
func podOwner(p *corev1.Pod) string {
	if o := p.Annotations[AnnotationOwner]; o != "" {
		return o
	}
	return p.Labels[LabelUserSub]
}

// workspaceFrom reads a workspace from its pod.
func workspaceFrom(p *corev1.Pod) Workspace {
	w := Workspace{
		ID: p.Labels[LabelWorkspaceID], PodName: p.Name, Namespace: p.Namespace,
		Owner: podOwner(p), Phase: string(p.Status.Phase), PodIP: p.Status.PodIP,
		Template: p.Annotations[AnnotationTemplate], Created: p.CreationTimestamp.Time,
		pod: p,
	}
	if p.DeletionTimestamp != nil {
		w.Phase = "Terminating"
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			w.Ready = p.DeletionTimestamp == nil
		}
	}
	return w
}

// findWorkspace returns the pod of workspace id in ns, or nil: the oldest
// live pod, else (only terminating ones left) the oldest terminating one. A
// pod that a spawn removed at once (grace period 0, after losing a race) is
// waited out for a moment rather than reported as terminating.
func (c *Client) findWorkspace(ctx context.Context, ns, id string) (*corev1.Pod, error) {
	for wait := 0; ; wait++ {
		list, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{
			LabelSelector: workspaceSelector(id),
		})
		if err != nil {
			return nil, fmt.Errorf("look up workspace %s in %s: %w", id, ns, err)
		}
		found := oldestPod(list.Items)
		if found == nil || found.DeletionTimestamp == nil || found.DeletionGracePeriodSeconds == nil ||
			*found.DeletionGracePeriodSeconds != 0 || wait == 30 {
			return found, nil
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// ownerSelector selects the workspaces of owner.
func ownerSelector(owner string) string {
	return LabelType + "=" + TypeWorkspace + "," + LabelUserSub + "=" + OwnerLabel(owner)
}

// workspaceSelector selects the pods of workspace id.
func workspaceSelector(id string) string {
	return LabelType + "=" + TypeWorkspace + "," + LabelWorkspaceID + "=" + id
}

// oldestPod picks a workspace's pod among pods with its id: live before
// terminating, then the oldest, then by name.
func oldestPod(pods []corev1.Pod) *corev1.Pod {
	var found *corev1.Pod
	for i := range pods {
		p := &pods[i]
		switch {
		case found == nil:
			found = p
		case (p.DeletionTimestamp == nil) != (found.DeletionTimestamp == nil):
			if p.DeletionTimestamp == nil {
				found = p
			}
		case p.CreationTimestamp.Before(&found.CreationTimestamp) ||
			p.CreationTimestamp.Equal(&found.CreationTimestamp) && p.Name < found.Name:
			found = p
		}
	}
	return found
}

func validateID(id string) error {
	if id == "" {
		return inputErr("id", "must not be empty")
	}
	if errs := validation.IsValidLabelValue(id); len(errs) > 0 {
		return inputErr("id", "%q: %s", id, strings.Join(errs, "; "))
	}
	return nil
}

// SpawnWorkspace creates a workspace pod from a template or an inline spec,
// applying every spawner annotation. Spawning an id that exists for the same
// owner returns it with Existing set; for another owner it is an
// *OwnershipError. When any step fails, what the spawn created is removed
// and the error is a *SpawnError naming the step.
func (c *Client) SpawnWorkspace(ctx context.Context, req SpawnRequest) (*Workspace, error) {
	ns, err := c.Namespace(req.Namespace)
	if err != nil {
		return nil, err
	}
	if err := validateID(req.ID); err != nil {
		return nil, err
	}
	owner := ownerOf(req.Owner)
	// Spawns of one id through this client take turns, so that within one
	// nocrd they never race; across replicas the checks below settle it.
	defer c.spawns.lock(ns + "/" + req.ID)()
	// And one owner's spawns take turns from admission until their pod
	// exists, so that each review counts the workspaces of the spawns
	// before it: a quota holds however many spawns an agent starts at once.
	defer c.ownerSpawns.lock(ns + "/" + owner)()
	if existing, err := c.findWorkspace(ctx, ns, req.ID); err != nil {
		return nil, err
	} else if existing != nil {
		return c.existing(existing, owner)
	}

	spec, annotations, template, err := c.workspaceSource(ctx, ns, req)
	if err != nil {
		return nil, err
	}
	saName := ""
	if annotations[AnnotationIAMRoleARN] != "" {
		saName = WorkspacePodName(owner, req.ID)
	}
	pod, err := BuildWorkspacePod(req, spec, annotations, template, saName, time.Now())
	if err != nil {
		return nil, err
	}
	pod.Namespace = ns
	if pod, err = c.admission(ctx, OperationSpawnWorkspace, owner, req.Claims, &Template{Name: template, Annotations: annotations}, pod); err != nil {
		return nil, err
	}

	var sa *corev1.ServiceAccount
	if saName != "" {
		want := &corev1.ServiceAccount{
			ObjectMeta: metav1.ObjectMeta{
				Name: saName, Labels: maps.Clone(pod.Labels),
				Annotations: map[string]string{AnnotationEKSRoleARN: annotations[AnnotationIAMRoleARN]},
			},
		}
		sa, err = c.kube.CoreV1().ServiceAccounts(ns).Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			sa, err = c.reclaimServiceAccount(ctx, ns, want, err)
			if apierrors.IsAlreadyExists(err) {
				// A concurrent spawn of the same workspace got here first.
				return c.afterRace(ctx, ns, req.ID, owner, "create service account", err)
			}
		}
		if err != nil {
			return nil, &SpawnError{Step: "create service account", Err: err}
		}
	}
	for attempt := 0; ; attempt++ {
		created, err := c.kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			if sa != nil {
				c.cleanup(ns, "", sa)
			}
			if !apierrors.IsAlreadyExists(err) {
				return nil, &SpawnError{Step: "create pod", Err: err}
			}
			// A concurrent spawn by the same owner made this pod. It may
			// have stepped back from a race and removed it since: then the
			// id is free again.
			if p, ferr := c.findWorkspace(ctx, ns, req.ID); ferr != nil || p != nil && p.DeletionTimestamp == nil || attempt == 3 || sa != nil {
				return c.afterRace(ctx, ns, req.ID, owner, "create pod", err)
			}
			if err := pause(ctx); err != nil {
				return nil, err
			}
			continue
		}
		if sa != nil {
			// The ServiceAccount goes away with its pod.
			patch := fmt.Sprintf(`{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"Pod","name":%q,"uid":%q}]}}`, created.Name, created.UID)
			if _, err := c.kube.CoreV1().ServiceAccounts(ns).Patch(ctx, sa.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				c.cleanup(ns, created.Name, sa)
				return nil, &SpawnError{Step: "own service account", Err: err}
			}
		}
		// Two owners spawning one id at once each create a pod (their pod
		// names differ). A spawn keeps its pod only if it sees no other live
		// pod for the id created in the same second or earlier; otherwise it
		// removes its own. Creation times have one-second resolution, so two
		// spawns may both step back: then the id is free again and the spawn
		// tries once more after a short random pause.
		rival, err := c.rival(ctx, ns, req.ID, created)
		if err != nil || rival == nil {
			w := workspaceFrom(created)
			return &w, nil
		}
		c.cleanup(ns, created.Name, nil)
		if first, err := c.findWorkspace(ctx, ns, req.ID); err == nil && first != nil && first.DeletionTimestamp == nil {
			if sa != nil {
				c.cleanup(ns, "", sa)
			}
			return c.existing(first, owner)
		}
		// A ServiceAccount was owned by the removed pod and is being
		// collected with it: do not build on it again.
		if attempt == 3 || sa != nil {
			if sa != nil {
				c.cleanup(ns, "", sa)
			}
			return nil, &SpawnError{Step: "create pod", Err: fmt.Errorf("workspace %s is being spawned concurrently; try again", req.ID)}
		}
		if err := pause(ctx); err != nil {
			return nil, err
		}
	}
}

// orphanAge is how old a workspace's ServiceAccount without an owning pod
// must be before a spawn takes it for the leftover of one that never
// finished. A spawn owns its account within moments of creating it; a
// younger one may be another nocrd's spawn on its way to its pod.
var orphanAge = time.Minute

// reclaimServiceAccount handles the account want (of a workspace without a
// live pod: the caller checked, holding the id's lock) found already
// there. An account labelled for this very workspace that no pod owns was
// left by a spawn that stopped before its pod existed (nocrd was stopped
// in between): it is replaced by want. Any other is an error: exists, the
// AlreadyExists the create met, when it may be a concurrent spawn's.
func (c *Client) reclaimServiceAccount(ctx context.Context, ns string, want *corev1.ServiceAccount, exists error) (*corev1.ServiceAccount, error) {
	found, err := c.kube.CoreV1().ServiceAccounts(ns).Get(ctx, want.Name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return c.kube.CoreV1().ServiceAccounts(ns).Create(ctx, want, metav1.CreateOptions{})
		}
		return nil, err
	}
	ours := len(found.OwnerReferences) == 0
	for _, k := range []string{LabelType, LabelWorkspaceID, LabelUserSub} {
		ours = ours && found.Labels[k] == want.Labels[k]
	}
	if !ours {
		return nil, exists
	}
	if age := time.Since(found.CreationTimestamp.Time); age < orphanAge {
		return nil, fmt.Errorf("service account %s, made %s ago, has no pod yet: another spawn of this workspace may be under way; try again in %s",
			found.Name, age.Round(time.Second), (orphanAge - age).Round(time.Second))
	}
	err = c.kube.CoreV1().ServiceAccounts(ns).Delete(ctx, found.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &found.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("remove the orphaned service account %s: %w", found.Name, err)
	}
	return c.kube.CoreV1().ServiceAccounts(ns).Create(ctx, want, metav1.CreateOptions{})
}

// pause waits a short random time before a spawn tries again after a race.
func pause(ctx context.Context) error {
	select {
	case <-time.After(time.Duration(20+mrand.IntN(200)) * time.Millisecond):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// rival returns another live pod of workspace id created no later than
// mine (to the second), or nil.
func (c *Client) rival(ctx context.Context, ns, id string, mine *corev1.Pod) (*corev1.Pod, error) {
	list, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{
		LabelSelector: workspaceSelector(id),
	})
	if err != nil {
		return nil, err
	}
	for i := range list.Items {
		p := &list.Items[i]
		if p.UID != mine.UID && p.DeletionTimestamp == nil && !mine.CreationTimestamp.Before(&p.CreationTimestamp) {
			return p, nil
		}
	}
	return nil, nil
}

func (c *Client) existing(p *corev1.Pod, owner string) (*Workspace, error) {
	w := workspaceFrom(p)
	if w.Owner != owner {
		return nil, &OwnershipError{ID: w.ID, Namespace: p.Namespace}
	}
	if p.DeletionTimestamp != nil {
		return nil, fmt.Errorf("workspace %s in %s is still terminating: spawn it again once it is gone", w.ID, p.Namespace)
	}
	w.Existing = true
	return &w, nil
}

// afterRace resolves a create that found its object already there: the
// workspace another spawn made, or the original error.
func (c *Client) afterRace(ctx context.Context, ns, id, owner, step string, cause error) (*Workspace, error) {
	p, err := c.findWorkspace(ctx, ns, id)
	if err != nil || p == nil {
		return nil, &SpawnError{Step: step, Err: cause}
	}
	return c.existing(p, owner)
}

// cleanup removes what a failed spawn created, with a context of its own so
// that a cancelled request still leaves nothing behind.
func (c *Client) cleanup(ns, podName string, sa *corev1.ServiceAccount) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	zero := int64(0)
	if podName != "" {
		_ = c.deletePod(ctx, ns, podName, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	}
	if sa != nil {
		_ = c.kube.CoreV1().ServiceAccounts(ns).Delete(ctx, sa.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &sa.UID}})
	}
}

// workspaceSource resolves the spec and spawner annotations of a spawn: the
// template's, with inline annotations on top, or the inline spec's.
func (c *Client) workspaceSource(ctx context.Context, ns string, req SpawnRequest) (*corev1.PodSpec, map[string]string, string, error) {
	switch {
	case req.TemplateRef != "" && req.Spec != nil:
		return nil, nil, "", inputErr("spec", "give templateRef or an inline spec, not both")
	case req.TemplateRef != "":
		tns, tname, err := ParseTemplateRef(req.TemplateRef, ns)
		if err != nil {
			return nil, nil, "", err
		}
		t, err := c.GetTemplate(ctx, tns, tname)
		if err != nil {
			return nil, nil, "", err
		}
		if t.Invalid != "" {
			return nil, nil, "", fmt.Errorf("template %s/%s is not usable: %s", t.Namespace, t.Name, t.Invalid)
		}
		ann := maps.Clone(t.Annotations)
		maps.Copy(ann, req.Annotations)
		return t.Spec, ann, t.Namespace + "/" + t.Name, nil
	case req.Spec != nil:
		// BuildWorkspacePod checks it.
		return req.Spec, maps.Clone(nonNil(req.Annotations)), "", nil
	default:
		return nil, nil, "", inputErr("templateRef", "give a templateRef or an inline spec")
	}
}

// ListWorkspaces lists the workspaces in a namespace; a non-empty owner
// limits them to that owner's.
func (c *Client) ListWorkspaces(ctx context.Context, namespace, owner string) ([]Workspace, error) {
	ns, err := c.Namespace(namespace)
	if err != nil {
		return nil, err
	}
	sel := LabelType + "=" + TypeWorkspace
	if owner != "" {
		sel += "," + LabelUserSub + "=" + OwnerLabel(owner)
	}
	list, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list workspaces in %s: %w", ns, err)
	}
	out := make([]Workspace, 0, len(list.Items))
	for i := range list.Items {
		w := workspaceFrom(&list.Items[i])
		if owner == "" || w.Owner == owner {
			out = append(out, w)
		}
	}
	return out, nil
}

// StopWorkspace starts graceful termination of a workspace (its preStop hook
// runs within its grace period). Only its owner may stop it.
func (c *Client) StopWorkspace(ctx context.Context, namespace, id, owner string) (*Workspace, error) {
	ns, err := c.Namespace(namespace)
	if err != nil {
		return nil, err
	}
	if err := validateID(id); err != nil {
		return nil, err
	}
	p, err := c.findWorkspace(ctx, ns, id)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, &NotFoundError{Kind: "workspace", Namespace: ns, Name: id}
	}
	w := workspaceFrom(p)
	if w.Owner != ownerOf(owner) {
		return nil, &OwnershipError{ID: id, Namespace: ns}
	}
	err = c.deletePod(ctx, ns, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("stop workspace %s: %w", id, err)
	}
	w.Phase = "Terminating"
	w.Ready = false
	return &w, nil
}

// ErrNotReady is wrapped by WaitReady's error when the pod cannot become
// ready (it failed, or cannot be scheduled or pulled).
var ErrNotReady = errors.New("workspace cannot become ready")

// Stages a spawn reports while waiting, in order.
const (
	StageCreated     = "created"
	StageScheduled   = "scheduled"
	StageInitRunning = "init running"
	StageReady       = "ready"
)

// stageOf returns how far a pod has come, and a reason when it cannot come
// further.
func stageOf(p *corev1.Pod) (stage string, stuck string) {
	stage = StageCreated
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			if c.Status == corev1.ConditionTrue {
				stage = StageScheduled
			} else if c.Reason == corev1.PodReasonUnschedulable {
				return stage, "unschedulable: " + c.Message
			}
		}
	}
	for _, cs := range p.Status.InitContainerStatuses {
		if cs.State.Running != nil || cs.State.Terminated != nil {
			stage = StageInitRunning
		}
	}
	for _, cs := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil {
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError":
				return stage, fmt.Sprintf("container %s: %s: %s", cs.Name, w.Reason, w.Message)
			}
		}
	}
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		return stage, fmt.Sprintf("pod %s: %s %s", strings.ToLower(string(p.Status.Phase)), p.Status.Reason, p.Status.Message)
	}
	if p.DeletionTimestamp != nil {
		return stage, "pod is being deleted"
	}
	w := workspaceFrom(p)
	if w.Ready && w.PodIP != "" {
		return StageReady, ""
	}
	return stage, ""
}

// WaitReady waits until the workspace's pod is Running and Ready with an IP,
// calling progress (when not nil) each time it reaches a new stage. A pod
// that cannot become ready ends the wait with an error wrapping ErrNotReady
// that carries the pod's reason and its latest warning event.
func (c *Client) WaitReady(ctx context.Context, w *Workspace, progress func(stage string)) (*Workspace, error) {
	pods := c.kube.CoreV1().Pods(w.Namespace)
	last := ""
	report := func(stage string) {
		if stage != last && progress != nil {
			progress(stage)
		}
		last = stage
	}
	// The pod exists: that is the first stage, however far it has got.
	report(StageCreated)
	p := w.pod // as spawned: watch from there without another read
	for {
		if p == nil {
			var err error
			if p, err = pods.Get(ctx, w.PodName, metav1.GetOptions{}); err != nil {
				return nil, fmt.Errorf("wait for workspace %s: %w", w.ID, err)
			}
		}
		watcher, err := pods.Watch(ctx, metav1.ListOptions{
			FieldSelector:   "metadata.name=" + w.PodName,
			ResourceVersion: p.ResourceVersion,
		})
		if err != nil {
			return nil, fmt.Errorf("wait for workspace %s: %w", w.ID, err)
		}
		for {
			stage, stuck := stageOf(p)
			report(stage)
			if stuck != "" {
				watcher.Stop()
				return nil, fmt.Errorf("%w: workspace %s: %s%s", ErrNotReady, w.ID, stuck, c.lastWarning(ctx, p))
			}
			if stage == StageReady {
				watcher.Stop()
				ready := workspaceFrom(p)
				ready.Existing = w.Existing
				return &ready, nil
			}
			ev, ok := <-watcher.ResultChan()
			if !ok {
				p = nil // the watch ended: get the pod again and re-watch
				break
			}
			if ev.Type == watch.Deleted {
				watcher.Stop()
				return nil, fmt.Errorf("%w: workspace %s: its pod was deleted", ErrNotReady, w.ID)
			}
			if np, isPod := ev.Object.(*corev1.Pod); isPod {
				p = np
			}
			if ctx.Err() != nil {
				watcher.Stop()
				return nil, fmt.Errorf("wait for workspace %s: stage %q: %w", w.ID, last, ctx.Err())
			}
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("wait for workspace %s: stage %q: %w", w.ID, last, ctx.Err())
		}
	}
}

// lastWarning returns the newest warning event of a pod, for error messages.
func (c *Client) lastWarning(ctx context.Context, p *corev1.Pod) string {
	evs, err := c.kube.CoreV1().Events(p.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.uid=" + string(p.UID) + ",type=Warning",
	})
	if err != nil || len(evs.Items) == 0 {
		return ""
	}
	e := slices.MaxFunc(evs.Items, func(a, b corev1.Event) int { return a.LastTimestamp.Compare(b.LastTimestamp.Time) })
	return fmt.Sprintf(" (event %s: %s)", e.Reason, e.Message)
}
