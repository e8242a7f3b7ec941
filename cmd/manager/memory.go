package main

import (
	"context"
	"runtime/debug"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// startupMemory returns to the system, once the CertificateRequest cache has
// synced, the memory that filling it took. The initial list decodes every
// CertificateRequest of the cluster in full before the cache transform trims
// those of other issuers (controllers.TrimForeignRequest); the Go runtime
// keeps those pages for reuse and gives them back only slowly, so without
// this the operator's resident memory stays near that start-up peak for
// minutes. One forced collection per start costs a few milliseconds.
type startupMemory struct{ cache cache.Cache }

var _ manager.LeaderElectionRunnable = startupMemory{}

// Start waits for the informer the request controller uses (the cache
// shares one per type), then frees.
func (s startupMemory) Start(ctx context.Context) error {
	inf, err := s.cache.GetInformer(ctx, &cmapi.CertificateRequest{})
	if err != nil {
		return nil // the request controller reports this itself
	}
	if toolscache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		debug.FreeOSMemory()
	}
	return nil
}

// NeedLeaderElection is true: a standby replica does not fill the request
// cache until it leads.
func (startupMemory) NeedLeaderElection() bool { return true }
