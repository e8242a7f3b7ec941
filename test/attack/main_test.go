package attack

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/controllers"
	"github.com/scep-operator/scep-operator/internal/egress"
	"github.com/scep-operator/scep-operator/test/hygiene"
	"github.com/scep-operator/scep-operator/test/stack"
)

const (
	// tenant is the attacker's namespace, victim another team's.
	tenant = "tenant"
	victim = "victim"
	// attackerName is the user the attacker acts as: a Role in tenant only.
	attackerName = "mallory@tenant.example"
	// teamLabel on each namespace is what the ClusterSCEPProfiles'
	// namespaceSelectors select; only the cluster admin can set it.
	teamLabel = "teams.example/name"
	// clusterResourceNamespace holds the ClusterSCEPProfiles' Secrets (the
	// chart's release namespace).
	clusterResourceNamespace = "scep-operator"
	clusterDomain            = "cluster.local"
)

// deniedCIDR is the address the suite's egress deny-list refuses: a
// loopback address other than 127.0.0.1, where a listener counts every
// connection that reaches it.
const deniedCIDR = "127.0.0.2/32"

// trustNamespace is where CA bundles go: the chart's caDistribution.namespace.
const trustNamespace = "cert-manager"

// operatorOptions are the manager flags the suite sets beyond the chart's:
// the egress deny-list (--egress-deny-cidrs=deniedCIDR), and what the
// chart's caDistribution values pass as flags (the in-process operator
// reads none).
func operatorOptions(o *controllers.Options) {
	p, err := egress.Parse("", deniedCIDR)
	if err != nil {
		panic(err)
	}
	o.Egress = p
	o.CABundle = controllers.CABundleOptions{Namespace: trustNamespace, ClusterTrustBundles: true}
}

// world is the product running once for the package's tests.
var world struct {
	once     sync.Once
	err      error
	st       *stack.Stack
	attacker client.Client
	// namespacesAllowed: the chart lets the operator watch Namespaces
	// (see mayWatchNamespaces).
	namespacesAllowed bool
}

// operatorLog keeps what the in-process operator logged, for the secret
// sweep and for failing rows.
var operatorLog stack.LogBuffer

// secretsUsed are the secret values the tests gave the operator; their
// Secrets are deleted when each test ends, so the final sweep is told.
var secretsUsed struct {
	sync.Mutex
	list []hygiene.Secret
}

// neverShown records a secret value the sweep must not find.
func neverShown(where, value string) {
	secretsUsed.Lock()
	defer secretsUsed.Unlock()
	secretsUsed.list = append(secretsUsed.list, hygiene.Secret{Where: where, Value: value})
}

func TestMain(m *testing.M) {
	code := m.Run()
	if world.st != nil {
		if code == 0 {
			code = sweep()
		}
		world.st.Down()
	}
	os.Exit(code)
}

// sweep searches the operator's logs, Events and statuses for every secret
// the cluster holds and the tests used (challenge passwords, credentials,
// private keys): attacks must not have shown one either.
func sweep() int {
	secretsUsed.Lock()
	extra := secretsUsed.list
	secretsUsed.Unlock()
	r, err := hygiene.Sweep(context.Background(), world.st.Client(), operatorLog.String(), extra...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "secret hygiene sweep:", err)
		return 1
	}
	fmt.Println("secret hygiene sweep:", r)
	if len(r.Findings) > 0 {
		fmt.Fprintln(os.Stderr, "secrets were shown:\n  "+strings.Join(r.Findings, "\n  "))
		return 1
	}
	return 0
}

// up starts the product on first use and returns it.
func up(t *testing.T) *stack.Stack {
	t.Helper()
	world.once.Do(func() {
		world.st, world.err = stack.Up(context.Background(), stack.Options{
			HelmValues: []string{
				// The tenant's SCEPProfiles keep their Secrets in tenant.
				"rbac.secretNamespaces={" + tenant + "}",
				"rebuild.namespaces={" + tenant + "," + victim + "}",
				// CA distribution as an admin would turn it on (trustNamespace).
				"caDistribution.enabled=true",
				"caDistribution.clusterTrustBundles=true",
			},
			OperatorLog:     &operatorLog,
			OperatorOptions: operatorOptions,
		})
		if world.err == nil {
			world.namespacesAllowed, world.err = mayWatchNamespaces(context.Background(), world.st)
		}
		if world.err == nil {
			world.attacker, world.err = setUpAttacker(context.Background(), world.st)
		}
	})
	if world.err != nil {
		t.Fatalf("starting the product: %v", world.err)
	}
	return world.st
}

// admin is the cluster admin's client (and the test's eyes).
func admin(t *testing.T) client.Client { return up(t).Client() }

// attacker is the tenant user's client.
func attacker(t *testing.T) client.Client {
	up(t)
	return world.attacker
}

// mayWatchNamespaces says whether the operator's ServiceAccount may watch
// Namespaces: the signer reads a request's Namespace from its cache (which
// lists and watches) for a ClusterSCEPProfile's namespaceSelector, and
// without the right every such request waits forever.
func mayWatchNamespaces(ctx context.Context, st *stack.Stack) (bool, error) {
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               st.ServiceAccount,
		Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + clusterResourceNamespace, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Resource: "namespaces", Verb: "watch"},
	}}
	if err := st.Client().Create(ctx, sar); err != nil {
		return false, err
	}
	return sar.Status.Allowed, nil
}

// setUpAttacker labels the namespaces for the profiles' selectors and gives
// the attacker what a namespace user has: a Role in tenant only.
func setUpAttacker(ctx context.Context, st *stack.Stack) (client.Client, error) {
	c := st.Client()
	for _, ns := range []string{tenant, victim} {
		if err := st.Env.CreateNamespace(ctx, ns); err != nil {
			return nil, err
		}
		n := &corev1.Namespace{}
		if err := c.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
			return nil, err
		}
		orig := n.DeepCopy()
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[teamLabel] = ns
		if err := c.Patch(ctx, n, client.MergeFrom(orig)); err != nil {
			return nil, err
		}
	}
	verbs := []string{"create", "get", "list", "watch", "update", "patch", "delete"}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "namespace-user"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{cmapi.SchemeGroupVersion.Group}, Resources: []string{"certificates", "certificaterequests"}, Verbs: verbs},
			{APIGroups: []string{scepv1alpha1.GroupVersion.Group}, Resources: []string{"scepprofiles"}, Verbs: verbs},
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: verbs},
		},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "namespace-user"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: attackerName}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := c.Create(ctx, o); err != nil {
			return nil, err
		}
	}
	// The API server's RBAC authorizer reads roles through its own
	// informers: wait until it has this one, or the attacker's first
	// request could be refused for the lag, not by the operator.
	deadline := time.Now().Add(30 * time.Second)
	for {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               attackerName,
			Groups:             []string{"system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: tenant, Group: cmapi.SchemeGroupVersion.Group, Resource: "certificates", Verb: "create"},
		}}
		if err := c.Create(ctx, sar); err != nil {
			return nil, err
		}
		if sar.Status.Allowed {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the attacker's Role is not in force after 30s: %s", sar.Status.Reason)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cfg := rest.CopyConfig(st.Env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: attackerName, Groups: []string{"system:authenticated"}}
	return client.New(cfg, client.Options{Scheme: st.Env.Scheme})
}
