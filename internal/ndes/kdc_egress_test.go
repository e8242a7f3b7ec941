package ndes

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jcmturner/gokrb5/v8/config"

	"github.com/scep-operator/scep-operator/internal/egress"
)

// TestResolvedKDCs: gokrb5 dials KDCs itself, so a KDC given by name is
// handed to it as the addresses checked against the egress policy, never as
// the name (which could resolve elsewhere by the time it dials).
func TestResolvedKDCs(t *testing.T) {
	conf := config.New()
	conf.Realms = []config.Realm{{Realm: "CORP.EXAMPLE", KDC: []string{"localhost:8888", "192.0.2.10:88", "localhost"}}}

	open, err := egress.Parse("", "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := resolvedKDCs(context.Background(), conf, open)
	if err != nil {
		t.Fatalf("resolvedKDCs: %v", err)
	}
	kdcs := got.Realms[0].KDC
	for _, k := range kdcs {
		if strings.Contains(k, "localhost") {
			t.Errorf("KDCs %v: the name is handed to gokrb5, not its checked addresses", kdcs)
		}
	}
	if !slices.Contains(kdcs, "127.0.0.1:8888") || !slices.Contains(kdcs, "192.0.2.10:88") || !slices.Contains(kdcs, "127.0.0.1:88") {
		t.Errorf("KDCs %v, want 127.0.0.1:8888, 192.0.2.10:88 and 127.0.0.1:88 (the default port) among them", kdcs)
	}
	if conf.Realms[0].KDC[0] != "localhost:8888" {
		t.Errorf("the configuration itself was changed: %v", conf.Realms[0].KDC)
	}

	// A name that resolves to a refused address is refused before any dial.
	loopbackDenied, err := egress.Parse("", "127.0.0.0/8,::1/128")
	if err != nil {
		t.Fatal(err)
	}
	conf.Realms[0].KDC = []string{"localhost:8888"}
	if _, err := resolvedKDCs(context.Background(), conf, loopbackDenied); err == nil || !strings.Contains(err.Error(), "KDC localhost:8888") {
		t.Errorf("a KDC name resolving to a denied address: %v, want a refusal naming it", err)
	}
}
