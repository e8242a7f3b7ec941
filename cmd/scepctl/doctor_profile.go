package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/egress"
	"github.com/scep-operator/scep-operator/internal/profiles"
)

// profileTarget reads the profile --profile names, with the caller's
// kubeconfig, and builds the target with the operator's own code
// (profiles.Registry): the same client, trust, pin and Secrets. A profile
// the operator could not use is a FAIL step, not a usage error.
func (f *doctorFlags) profileTarget(ctx context.Context, policy *egress.Policy, stderr io.Writer, r *report) (*target, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	kc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: f.kubeContext})
	cfg, err := kc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("%w: reading the kubeconfig: %v", errUsage, err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := scepv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	var p scepv1alpha1.Profile
	ns, name, namespaced := strings.Cut(f.profile, "/")
	if namespaced {
		p = &scepv1alpha1.SCEPProfile{}
	} else {
		ns, name = "", f.profile
		p = &scepv1alpha1.ClusterSCEPProfile{}
	}
	if name == "" || (namespaced && ns == "") {
		return nil, fmt.Errorf("%w: --profile %q: want NAMESPACE/NAME (a SCEPProfile) or NAME (a ClusterSCEPProfile)", errUsage, f.profile)
	}
	key := profiles.Key{Kind: "ClusterSCEPProfile", Namespace: ns, Name: name}
	if namespaced {
		key.Kind = "SCEPProfile"
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
		r.add(verdictFail, "profile", "reading %s: %v", key, err)
		if apierrors.IsNotFound(err) {
			r.fix("check the name (a namespaced profile is NAMESPACE/NAME) and the kubeconfig's cluster")
		}
		return nil, nil
	}
	t := &target{name: key.String(), egress: policy, status: map[string]int{}, insecureFrom: "spec.tls.insecureSkipVerify", pinFrom: "spec.caFingerprint, spec.caFingerprints", rootsFrom: "the system roots"}
	reg := &profiles.Registry{
		Reader: c, ClusterResourceNamespace: f.clusterNS, Egress: policy, Timeout: f.timeout, Logger: f.logger(stderr),
		Observe: func(_ profiles.Key, op string, status int, d time.Duration) { t.observe(op, status, d) },
	}
	spec := p.GetSpec()
	if t.url, err = url.Parse(spec.URL); err != nil {
		r.add(verdictFail, "profile", "spec.url %q: %v", spec.URL, err)
		return nil, nil
	}
	t.keySizeFloor = 2048
	if spec.KeySize != 0 {
		t.keySizeFloor = int(spec.KeySize)
	}
	t.insecure = spec.TLS != nil && spec.TLS.InsecureSkipVerify
	// The pins the operator trusts: the profile's, and the next CA a
	// verified GetNextCACert announced under them (status.caRollover).
	if t.pins, err = profiles.TrustedPins(p); err != nil {
		return t.refuse(r, err)
	}
	var field string
	if t.roots, field, err = reg.RootCAs(ctx, p); err != nil {
		return t.refuse(r, err)
	}
	if field != "" {
		t.rootsFrom = field
	}
	if t.client, err = reg.Client(ctx, p); err != nil {
		return t.refuse(r, err)
	}
	secretNS := reg.SecretNamespace(p)
	switch spec.Challenge.Type {
	case scepv1alpha1.ChallengeStatic:
		ref := *spec.Challenge.PasswordSecretRef
		if _, err := reg.ReadSecretKey(ctx, secretNS, ref, "password"); err != nil {
			return t.refuse(r, err)
		}
		t.challenge = func(ctx context.Context) (string, error) {
			b, err := reg.ReadSecretKey(ctx, secretNS, ref, "password")
			return string(b), err
		}
	case scepv1alpha1.ChallengeDynamic:
		if err := reg.CheckDynamic(ctx, p); err != nil {
			return t.refuse(r, err)
		}
		t.ndes = func(ctx context.Context) (string, error) { return reg.DynamicPassword(ctx, p) }
		t.ndesURL = spec.Challenge.Dynamic.URL
	}
	r.add(verdictOK, "profile", "%s: %s, challenge %s, csrMode %s, keySize %d (Secrets in namespace %s)", key, spec.URL, orDefault(string(spec.Challenge.Type), "None"), orDefault(string(spec.CSRMode), "Passthrough"), t.keySizeFloor, secretNS)
	return t, nil
}

// refuse reports a profile the operator would refuse before reaching its
// server (a Secret missing, a field it cannot use, a refused address).
func (t *target) refuse(r *report, err error) (*target, error) {
	r.add(verdictFail, "profile", "the operator cannot use %s: %v", t.name, err)
	var se *profiles.SecretError
	var spe *profiles.SpecError
	switch {
	case egress.IsRefused(err):
		r.fix("point the profile at an address the operator may reach, or change the operator's egress flags")
	case errors.As(err, &se):
		r.fix("create the Secret or key the profile names (for a ClusterSCEPProfile in the cluster resource namespace, --cluster-resource-namespace here)")
	case errors.As(err, &spe):
		r.fix("correct %s in the profile", spe.Field)
	}
	return nil, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
