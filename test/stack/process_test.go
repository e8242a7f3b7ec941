package stack

import (
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/scep-operator/scep-operator/test/envtest"
)

// TestOperatorKubeconfigIsNeverSeenHalfWritten: a manager process reads the
// kubeconfig while the next one's start rewrites it (TestLeaderHandover's
// standby once read an empty file). Every read must find it whole.
func TestOperatorKubeconfigIsNeverSeenHalfWritten(t *testing.T) {
	s := &Stack{
		Env:            &envtest.Env{Config: &rest.Config{Host: "https://127.0.0.1:6443", TLSClientConfig: rest.TLSClientConfig{CAData: []byte("ca"), CertData: []byte("cert"), KeyData: []byte("key")}}},
		WorkDir:        t.TempDir(),
		ServiceAccount: "system:serviceaccount:scep-operator:scep-operator",
	}
	path, err := s.OperatorKubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for range 300 {
			if _, err := s.OperatorKubeconfig(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for reads := 0; ; reads++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d reads while it was rewritten 300 times", reads)
			return
		default:
		}
		kc, err := clientcmd.LoadFromFile(path)
		if err != nil || kc.CurrentContext != "operator" || kc.AuthInfos["operator"] == nil {
			t.Fatalf("read %d found the kubeconfig half written: %v", reads, err)
		}
	}
}
