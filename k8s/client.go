// Package k8s is nocrd's Kubernetes layer and its Go SDK: it builds clients
// by client-go's standard rules, keeps namespaced mode inside its namespace,
// and implements the pod, template and permission operations that every
// front end (MCP tools, UI, programmatic callers) goes through, so that
// scoping and validation are enforced once.
package k8s

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Mode is the access scope of a Client.
type Mode string

const (
	// ModeCluster allows operations in any namespace.
	ModeCluster Mode = "cluster"
	// ModeNamespaced locks every operation to Config.Namespace.
	ModeNamespaced Mode = "namespaced"
)

// Config configures a Client. Credentials are found as client-go's callers
// usually find them: the Kubeconfig files (a list separated like PATH), else
// the in-cluster service account, else ~/.kube/config.
type Config struct {
	Mode       Mode   `env:"MODE" envDefault:"cluster"`
	Namespace  string `env:"NAMESPACE" envDefault:"nogoo9"`
	Kubeconfig string `env:"KUBECONFIG"`
	// ReaperInterval is how often expired workspaces (nogoo9/ttl) are
	// deleted; 0 turns the reaper off.
	ReaperInterval time.Duration `env:"REAPER_INTERVAL" envDefault:"30s"`
	// Context selects a kubeconfig context other than the current one.
	Context string
}

// Validate reports the first invalid field, naming its flag and variable.
func (c Config) Validate() error {
	if !slices.Contains([]Mode{ModeCluster, ModeNamespaced}, c.Mode) {
		return fmt.Errorf("--mode/MODE: must be cluster or namespaced, got %q", c.Mode)
	}
	if err := ValidateName("namespace", c.Namespace); err != nil {
		return fmt.Errorf("--namespace/NAMESPACE: %w", err)
	}
	if c.ReaperInterval < 0 {
		return fmt.Errorf("--reaper-interval/REAPER_INTERVAL: must not be negative, got %s", c.ReaperInterval)
	}
	return nil
}

// Client performs nocrd's operations against one API server with one
// identity.
type Client struct {
	cfg  Config
	rest *rest.Config
	kube kubernetes.Interface
	// spawns serialises spawns of one workspace id within this process.
	spawns keyLocks
	// ownerSpawns serialises the spawns of one owner in a namespace
	// within this process, for admission (see SpawnWorkspace).
	ownerSpawns keyLocks
	// caches are this process's running route caches, told at once of the
	// pods this client deletes (see deletePod).
	cachesMu sync.Mutex
	caches   map[*EndpointCache]struct{}
	// deleted, when set, is told of them too (see OnDelete).
	deleted atomic.Pointer[func(context.Context, *corev1.Pod)]
	// admit, when set, decides every spawn and pod from a template.
	admit Admitter
	// resourceTypes is the discovery state of the generic resource
	// operations (resources.go), made on first use.
	resourceTypes resourceTypes
	// tokenCache keeps the clients of callers' own tokens (token.go).
	tokenCache
}

// New builds a Client from cfg, loading credentials by client-go's rules.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rc, err := RESTConfig(cfg.Kubeconfig, cfg.Context)
	if err != nil {
		return nil, err
	}
	return NewForConfig(cfg, rc)
}

// RESTConfig loads client configuration: the kubeconfig files when given
// (a list separated like PATH, merged as kubectl merges $KUBECONFIG), else
// the in-cluster service account, else ~/.kube/config. It reads no
// environment variable itself.
func RESTConfig(kubeconfig, context string) (*rest.Config, error) {
	if kubeconfig == "" && context == "" {
		if rc, err := rest.InClusterConfig(); err == nil {
			return rc, nil
		} else if !errors.Is(err, rest.ErrNotInCluster) {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
	}
	rules := &clientcmd.ClientConfigLoadingRules{Precedence: []string{clientcmd.RecommendedHomeFile}}
	if kubeconfig != "" {
		rules.Precedence = filepath.SplitList(kubeconfig)
		for _, f := range rules.Precedence {
			if _, err := os.Stat(f); err != nil {
				return nil, fmt.Errorf("kubeconfig: %w", err)
			}
		}
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: context}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubernetes credentials: %w", err)
	}
	return rc, nil
}

// NewForConfig builds a Client for an existing REST configuration.
func NewForConfig(cfg Config, rc *rest.Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rc = rest.CopyConfig(rc)
	if rc.UserAgent == "" {
		rc.UserAgent = "nocrd"
	}
	// client-go's client-side limiter (5 QPS, burst 10, unless set) would
	// queue a server's many concurrent callers behind each other; the API
	// server protects itself with Priority and Fairness, so nocrd leaves
	// throttling to it, as controller-runtime does.
	if rc.QPS == 0 && rc.RateLimiter == nil {
		rc.QPS = -1
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("create kubernetes client: %w", err)
	}
	return &Client{cfg: cfg, rest: rc, kube: kube, spawns: keyLocks{m: map[string]*keyLock{}}, ownerSpawns: keyLocks{m: map[string]*keyLock{}}, caches: map[*EndpointCache]struct{}{}}, nil
}

// Mode returns the client's access scope.
func (c *Client) Mode() Mode { return c.cfg.Mode }

// DefaultNamespace returns the namespace used when a caller names none.
func (c *Client) DefaultNamespace() string { return c.cfg.Namespace }

// Kubernetes returns the underlying clientset, for callers that need an
// operation this package does not offer. It bypasses namespace scoping.
func (c *Client) Kubernetes() kubernetes.Interface { return c.kube }

// ScopeError is returned when an operation names a namespace outside the
// client's scope.
type ScopeError struct {
	Requested, Allowed string
}

func (e *ScopeError) Error() string {
	return fmt.Sprintf("namespace %q is outside this server's scope: namespaced mode allows only %q", e.Requested, e.Allowed)
}

// Namespace resolves the namespace an operation runs in: the requested one,
// or the default when empty. In namespaced mode any other namespace is a
// *ScopeError. Every namespaced operation in this package calls it.
func (c *Client) Namespace(requested string) (string, error) {
	if requested == "" {
		return c.cfg.Namespace, nil
	}
	if c.cfg.Mode == ModeNamespaced && requested != c.cfg.Namespace {
		return "", &ScopeError{Requested: requested, Allowed: c.cfg.Namespace}
	}
	if err := ValidateName("namespace", requested); err != nil {
		return "", err
	}
	return requested, nil
}

// keyLocks is a mutex per key, held only while someone uses it.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

// lock takes key's mutex and returns its unlock.
func (k *keyLocks) lock(key string) (unlock func()) {
	k.mu.Lock()
	l := k.m[key]
	if l == nil {
		l = &keyLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
