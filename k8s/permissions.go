package k8s

import (
	"context"
	"errors"
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
	reviews := make([]review, len(accesses))
	for i, a := range accesses {
		reviews[i] = review{ns: ns, access: a}
	}
	allowed, err := c.allowedEach(ctx, reviews)
	if err != nil {
		return nil, err
	}
	out := make(map[Access]bool, len(accesses))
	for i, a := range accesses {
		out[a] = allowed[i]
	}
	return out, nil
}

// review asks whether access is allowed in namespace ns ("" for all).
type review struct {
	ns     string
	access Access
}

// allowedEach asks the API server every review, at most 8 at a time, and
// returns the answers in order.
func (c *Client) allowedEach(ctx context.Context, reviews []review) ([]bool, error) {
	out := make([]bool, len(reviews))
	errs := make([]error, len(reviews))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, r := range reviews {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i], errs[i] = c.allowed(ctx, r.ns, r.access)
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
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
