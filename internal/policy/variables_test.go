package policy

import (
	"strings"
	"testing"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// certificateRef is the controller ownerReference cert-manager writes on
// the requests of Certificate name.
func certificateRef(name string) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{APIVersion: "cert-manager.io/v1", Kind: "Certificate", Name: name, UID: types.UID("uid-" + name), Controller: &yes, BlockOwnerDeletion: &yes}
}

func TestVariablesFor(t *testing.T) {
	request := func(refs ...metav1.OwnerReference) *cmapi.CertificateRequest {
		return &cmapi.CertificateRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", OwnerReferences: refs, Annotations: map[string]string{
				cmapi.CertificateNameKey: "administrator", EmailAnnotation: "ops@shop.example"}},
			Spec: cmapi.CertificateRequestSpec{Username: "system:serviceaccount:cert-manager:cert-manager"},
		}
	}
	got := VariablesFor(request(certificateRef("web")), "cluster.local")
	want := Variables{"namespace": "shop", "certificatename": "web", "requestname": "web-1", "username": "system:serviceaccount:cert-manager:cert-manager",
		"email": "ops@shop.example", "domainname": "cluster.local", "devicename": "web.shop"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(Known) {
		t.Errorf("VariablesFor sets %d variables, Known lists %d", len(got), len(Known))
	}

	notController := certificateRef("web")
	notController.Controller = nil
	otherGroup := certificateRef("web")
	otherGroup.APIVersion = "evil.example/v1"
	otherKind := certificateRef("web")
	otherKind.Kind = "Secret"
	noUID := certificateRef("web")
	noUID.UID = ""
	secondController := certificateRef("other")
	secondController.Kind = "Job"
	for name, refs := range map[string][]metav1.OwnerReference{
		// The annotation says "administrator"; it is never read.
		"forged annotation, no owner":   nil,
		"owner is not the controller":   {notController},
		"owner in another API group":    {otherGroup},
		"owner of another kind":         {otherKind},
		"owner without a UID":           {noUID},
		"owner with an invalid name":    {certificateRef("Administrator,O=Admins")},
		"owner with a name holding a *": {certificateRef("*")},
		"owner and a second controller": {certificateRef("web"), secondController},
	} {
		t.Run(name, func(t *testing.T) {
			cr := request(refs...)
			vars := VariablesFor(cr, "cluster.local")
			if v, ok := vars["certificatename"]; ok {
				t.Errorf("%%certificatename%% = %q, want no value", v)
			}
			if v, ok := vars["devicename"]; ok {
				t.Errorf("%%devicename%% = %q, want no value", v)
			}
			if name, uid, ok := CertificateOwner(cr); ok {
				t.Errorf("CertificateOwner = %q %q", name, uid)
			}
		})
	}

	name, uid, ok := CertificateOwner(request(certificateRef("web")))
	if !ok || name != "web" || uid != "uid-web" {
		t.Errorf("CertificateOwner = %q, %q, %v", name, uid, ok)
	}
	// A request without a value for a variable has none (not "").
	bare := VariablesFor(&cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "shop"}}, "cluster.local")
	for _, n := range []string{"email", "username", "certificatename", "devicename"} {
		if _, ok := bare[n]; ok {
			t.Errorf("%s has a value on a bare request", n)
		}
	}
}

// A template that needs an owner says so, naming the variables.
func TestMissingVariables(t *testing.T) {
	_, err := parseTemplate("%certificatename%-%devicename%-%email%-%username%").bind(Variables{}, false)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"%certificatename%, %devicename%, %email%, %username% have no value", "made by a cert-manager Certificate", EmailAnnotation, "spec.username"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to contain %q", err, want)
		}
	}
	if _, err := parseTemplate("%email%").bind(Variables{"email": strings.Repeat("a", maxVariableLen+1)}, false); err == nil {
		t.Error("a value over maxVariableLen was bound")
	}
}

func TestPatternMatch(t *testing.T) {
	vars := Variables{"namespace": "shop", "email": "a*b"}
	tests := []struct {
		tmpl string
		fold bool
		s    string
		want bool
	}{
		{"x.%namespace%", false, "x.shop", true},
		{"x.%namespace%", false, "x.Shop", false},
		{"x.%namespace%", true, "X.Shop", true},
		{"*.apps", false, ".apps", true},
		{"*.apps", false, "a.b.apps", true},
		{"*.apps", false, "a.apps.x", false},
		{"a*b*c", false, "abc", true},
		{"a*b*c", false, "ac", false},
		{"a*bc*bc", false, "abcbc", true},
		{"a*a", false, "a", false},
		{"%email%", false, "a*b", true},
		{"%email%", false, "axxb", false},
		{"*%email%", false, "xa*b", true},
		{"*%email%", false, "xab", false},
		{"%namespace%", true, "SHOP", true},
		// ASCII folding only: the Kelvin sign is not a K.
		{"k", true, "\u212a", false},
	}
	for _, tt := range tests {
		p, err := parseTemplate(tt.tmpl).bind(vars, tt.fold)
		if err != nil {
			t.Fatalf("%s: %v", tt.tmpl, err)
		}
		if got := p.match(tt.s); got != tt.want {
			t.Errorf("%q (fold %v) matching %q = %v, want %v", tt.tmpl, tt.fold, tt.s, got, tt.want)
		}
	}
}
