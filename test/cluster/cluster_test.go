package cluster

import (
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/scep-operator/scep-operator/test/envtest"
	"github.com/scep-operator/scep-operator/test/node"
)

// start starts a cluster for the test, or skips (fails under
// SCEP_NODE_E2E=required) where this machine cannot run one.
func start(t *testing.T) *Cluster {
	t.Helper()
	root := envtest.RepoRoot(t)
	if err := Unavailable(node.BinDir(root)); err != nil {
		if os.Getenv(node.RequiredEnv) == "required" {
			t.Fatalf("%s=required, but this machine cannot run a cluster: %v", node.RequiredEnv, err)
		}
		t.Skipf("no cluster on this machine: %v", err)
	}
	c, err := Start(t.Context(), Options{Root: root, CRDPaths: []string{}, Progress: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// TestDeploymentGetsAScheduledPodOnThePodNetwork: a Deployment without
// nodeName or hostNetwork becomes a ReplicaSet and a Pod the scheduler
// binds to the node, with an address in the pod subnet, a projected
// ServiceAccount token, and its owner chain for garbage collection.
func TestDeploymentGetsAScheduledPodOnThePodNetwork(t *testing.T) {
	c := start(t)
	ctx := t.Context()
	cs := c.Node.Clientset
	labels := map[string]string{"app": "pause"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "pause"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers:                    []corev1.Container{{Name: "pause", Image: node.PauseImage.Ref, ImagePullPolicy: corev1.PullNever}},
				},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	err := c.Wait(ctx, 2*time.Minute, "the Deployment's Pod to run", func() (bool, string) {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=pause"})
		if err != nil {
			return false, err.Error()
		}
		if len(pods.Items) != 1 {
			return false, "pods: " + itoa(len(pods.Items))
		}
		pod = pods.Items[0]
		return pod.Status.Phase == corev1.PodRunning, "phase " + string(pod.Status.Phase)
	})
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, c.LogTail("kube-controller-manager", 20), c.LogTail("kubelet", 20))
	}
	if pod.Spec.NodeName != node.Name {
		t.Errorf("pod bound to %q, want %q", pod.Spec.NodeName, node.Name)
	}
	if len(pod.OwnerReferences) != 1 || pod.OwnerReferences[0].Kind != "ReplicaSet" {
		t.Errorf("pod owners %v, want one ReplicaSet", pod.OwnerReferences)
	}
	if !c.opts.PodSubnet.Contains(mustAddr(t, pod.Status.PodIP)) {
		t.Errorf("pod IP %q is not in %s", pod.Status.PodIP, c.opts.PodSubnet)
	}
	token := false
	for _, v := range pod.Spec.Volumes {
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				token = token || s.ServiceAccountToken != nil
			}
		}
	}
	if !token {
		t.Errorf("pod has no projected ServiceAccount token: %+v", pod.Spec.Volumes)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatalf("address %q: %v", s, err)
	}
	return a
}
