package k8s

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// ReaperLease is the coordination Lease, in the server's namespace, that
// the replica deleting expired workspaces holds.
const ReaperLease = "nocrd-workspace-reaper"

// ReapExpired deletes the workspaces whose nogoo9/expires-at has passed:
// in the server's namespace, or in every namespace in cluster mode. It
// returns how many it deleted.
func (c *Client) ReapExpired(ctx context.Context, now time.Time) (int, error) {
	ns := c.cfg.Namespace
	if c.cfg.Mode == ModeCluster {
		ns = metav1.NamespaceAll
	}
	list, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelType + "=" + TypeWorkspace})
	if err != nil {
		return 0, fmt.Errorf("list workspaces to reap: %w", err)
	}
	n := 0
	for i := range list.Items {
		p := &list.Items[i]
		exp, ok := p.Annotations[AnnotationExpiresAt]
		if !ok || p.DeletionTimestamp != nil {
			continue
		}
		at, err := time.Parse(time.RFC3339, exp)
		if err != nil || at.After(now) {
			continue
		}
		err = c.deletePod(ctx, p.Namespace, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return n, fmt.Errorf("reap workspace %s/%s: %w", p.Namespace, p.Name, err)
		}
		n++
	}
	return n, nil
}

// RunReaper deletes expired workspaces every interval until ctx ends, while
// this replica holds the ReaperLease, so that several replicas never reap
// at once. identity names this replica in the Lease.
func (c *Client) RunReaper(ctx context.Context, interval time.Duration, identity string, log *slog.Logger) error {
	if identity == "" {
		host, _ := os.Hostname()
		identity = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if _, err := c.kube.CoreV1().Namespaces().Get(ctx, c.cfg.Namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		log.Warn("workspace reaper disabled: its lease namespace does not exist", "namespace", c.cfg.Namespace)
		return nil
	}
	for _, verb := range []string{"get", "create", "update"} {
		if ok, err := c.allowed(ctx, c.cfg.Namespace, Access{Group: "coordination.k8s.io", Resource: "leases", Verb: verb}); err != nil || !ok {
			log.Warn("workspace reaper disabled: this identity may not "+verb+" leases", "namespace", c.cfg.Namespace, "err", err)
			return nil
		}
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, c.cfg.Namespace, ReaperLease,
		c.kube.CoreV1(), c.kube.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: identity})
	if err != nil {
		return fmt.Errorf("reaper lease: %w", err)
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   15 * time.Second,
		RenewDeadline:   10 * time.Second,
		RetryPeriod:     2 * time.Second,
		ReleaseOnCancel: true,
		Name:            ReaperLease,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				log.Info("workspace reaper leading", "identity", identity, "interval", interval)
				t := time.NewTicker(interval)
				defer t.Stop()
				for {
					if n, err := c.ReapExpired(ctx, time.Now()); err != nil {
						log.Warn("workspace reaper", "err", err)
					} else if n > 0 {
						log.Info("reaped expired workspaces", "count", n)
					}
					select {
					case <-ctx.Done():
						return
					case <-t.C:
					}
				}
			},
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return fmt.Errorf("reaper leader election: %w", err)
	}
	// Run returns when ctx ends or leadership is lost; try again until ctx
	// ends, so a replica that lost the lease competes for it again.
	for ctx.Err() == nil {
		le.Run(ctx)
	}
	return nil
}
