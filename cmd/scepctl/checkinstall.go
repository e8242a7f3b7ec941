package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
)

// serviceAccountTokenFile is where a Pod's ServiceAccount token is mounted.
const serviceAccountTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// runCheckInstall checks an installed operator the way `helm test` does,
// from a Pod in the cluster: its metrics endpoint answers a scrape
// authenticated with this Pod's ServiceAccount token, and every profile it
// serves is Ready. Each check prints OK or FAIL with the reason.
func runCheckInstall(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check-install", flag.ContinueOnError)
	metricsURL := fs.String("metrics-url", "", "the operator's metrics endpoint (https://SERVICE:8443/metrics); empty skips the scrape")
	tokenFile := fs.String("token-file", serviceAccountTokenFile, "bearer token for the scrape (the Pod's ServiceAccount token)")
	caFile := fs.String("metrics-ca-file", "", "CA bundle (PEM) of the metrics endpoint's certificate")
	insecure := fs.Bool("insecure-skip-tls-verify", false, "do not verify the metrics endpoint's certificate (the operator's default one is self-signed)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig for the profile check; empty means in-cluster (the Pod's ServiceAccount)")
	profiles := fs.Bool("profiles", true, "check that every SCEPProfile and ClusterSCEPProfile is Ready")
	timeout := fs.Duration("timeout", 30*time.Second, "how long each check may take")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if *metricsURL == "" && !*profiles {
		return fmt.Errorf("%w: nothing to check (--metrics-url or --profiles)", errUsage)
	}
	failed := 0
	report := func(what string, err error) {
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %v\n", what, err)
			return
		}
		fmt.Fprintf(stdout, "OK   %s\n", what)
	}
	if *metricsURL != "" {
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		n, err := scrape(cctx, *metricsURL, *tokenFile, *caFile, *insecure)
		cancel()
		report(fmt.Sprintf("metrics at %s (%d scep_ series)", *metricsURL, n), err)
	}
	if *profiles {
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		lines, err := profileStates(cctx, *kubeconfig)
		cancel()
		if err != nil {
			report("listing profiles", err)
		}
		for _, l := range lines {
			report(l.what, l.err)
		}
		if err == nil && len(lines) == 0 {
			fmt.Fprintln(stdout, "OK   no profiles yet")
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d check(s) failed", failed)
	}
	return nil
}

// scrape GETs the metrics endpoint with the bearer token and counts the
// operator's own series in the answer.
func scrape(ctx context.Context, url, tokenFile, caFile string, insecure bool) (int, error) {
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		return 0, fmt.Errorf("reading the bearer token: %w", err)
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure} //nolint:gosec // an explicit flag: the default metrics certificate is self-signed
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return 0, err
		}
		tlsConfig.RootCAs = x509.NewCertPool()
		if !tlsConfig.RootCAs.AppendCertsFromPEM(pem) {
			return 0, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, fmt.Errorf("%w: --metrics-url: %v", errUsage, err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}).Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("HTTP %s (401: the token was not accepted; 403: its ServiceAccount may not get /metrics)", resp.Status)
	}
	n := 0
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "scep_") {
			n++
		}
	}
	if !strings.Contains(string(body), "controller_runtime_") {
		return n, errors.New("the answer holds no controller_runtime_ metrics: is this the operator's endpoint?")
	}
	return n, nil
}

type profileState struct {
	what string
	err  error
}

// profileStates lists every profile with its Ready condition.
func profileStates(ctx context.Context, kubeconfig string) ([]profileState, error) {
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := scepv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	var out []profileState
	var cluster scepv1alpha1.ClusterSCEPProfileList
	if err := c.List(ctx, &cluster); err != nil {
		return nil, fmt.Errorf("ClusterSCEPProfiles: %w", err)
	}
	for _, p := range cluster.Items {
		out = append(out, profileState{"ClusterSCEPProfile " + p.Name + " Ready", notReady(p.Status.Conditions)})
	}
	var namespaced scepv1alpha1.SCEPProfileList
	if err := c.List(ctx, &namespaced); err != nil {
		return nil, fmt.Errorf("SCEPProfiles: %w", err)
	}
	for _, p := range namespaced.Items {
		out = append(out, profileState{"SCEPProfile " + p.Namespace + "/" + p.Name + " Ready", notReady(p.Status.Conditions)})
	}
	return out, nil
}

// notReady says why a profile is not Ready (nil when it is).
func notReady(conds []metav1.Condition) error {
	c := apimeta.FindStatusCondition(conds, "Ready")
	switch {
	case c == nil:
		return errors.New("no Ready condition yet")
	case c.Status != metav1.ConditionTrue:
		return fmt.Errorf("%s: %s", c.Reason, c.Message)
	}
	return nil
}

// restConfig is the kubeconfig's, or the Pod's in-cluster configuration.
func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("not in a Pod (%v): pass --kubeconfig", err)
	}
	return cfg, nil
}
