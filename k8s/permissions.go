package k8s

import (
	"context"
	"fmt"
	"strings"
	"sync"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Access names one resource and verb to check, as in no-crd's
// tool-to-permission table. Resource may carry a subresource ("pods/log").
type Access struct {
	// Group is the API group; empty for the core group.
	Group    string
	Resource string
	Verb     string
}

func (a Access) String() string { return a.Resource + " " + a.Verb }

// CheckAccess asks the API server, with SelfSubjectAccessReview, which of
// the given accesses this client's identity has. In namespaced mode each is
// checked in the configured namespace; in cluster mode across all namespaces.
func (c *Client) CheckAccess(ctx context.Context, accesses []Access) (map[Access]bool, error) {
	ns := ""
	if c.cfg.Mode == ModeNamespaced {
		ns = c.cfg.Namespace
	}
	out := make(map[Access]bool, len(accesses))
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
	)
	for _, a := range accesses {
		wg.Go(func() {
			ok, err := c.allowed(ctx, ns, a)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			out[a] = ok
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// allowed asks the API server whether this identity has access a in
// namespace ns ("" for all namespaces).
func (c *Client) allowed(ctx context.Context, ns string, a Access) (bool, error) {
	resource, sub, _ := strings.Cut(a.Resource, "/")
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: a.Verb, Group: a.Group, Resource: resource, Subresource: sub,
		},
	}}
	res, err := c.kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("check access %s: %w", a, err)
	}
	return res.Status.Allowed, nil
}
