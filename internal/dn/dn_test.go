package dn

import "testing"

func TestParse(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"CN=app.corp,O=Corp,C=US", "CN=app.corp,O=Corp,C=US"},
		{"/C=US/O=Corp/CN=app.corp", "CN=app.corp,O=Corp,C=US"},
		{"cn=a\\,b, ou=x", "CN=a\\,b,OU=x"},
		{"CN=dev;OU=Fleet;DC=corp", "CN=dev,OU=Fleet,0.9.2342.19200300.100.1.25=#1604636f7270"},
		{"E=ops@corp.example,CN=x", "1.2.840.113549.1.9.1=#16106f707340636f72702e6578616d706c65,CN=x"},
		{"", ""},
	}
	for _, tt := range tests {
		n, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got := n.String(); got != tt.want {
			t.Errorf("Parse(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"CN", "XX=1", "CN=", "CN=a\\"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}

// ParseAttributes keeps values as written (unescaped), so a template's
// %variable% stays inside its attribute; TypeName names types back.
func TestParseAttributes(t *testing.T) {
	want := []Attribute{{Type: attributeOIDs["O"], Name: "O", Value: "Corp"}, {Type: attributeOIDs["CN"], Name: "CN", Value: "%certificatename%.%namespace%,x"}}
	// "O=Corp;1" is two parts: ";1" is not TYPE=value.
	if _, err := ParseAttributes("CN=a,O=Corp;1"); err == nil {
		t.Errorf("a part without = was accepted")
	}
	attrs, err := ParseAttributes(`CN=%certificatename%.%namespace%\,x, O=Corp`)
	if err != nil || len(attrs) != 2 {
		t.Fatalf("attrs = %v, %v", attrs, err)
	}
	for i := range want {
		if !attrs[i].Type.Equal(want[i].Type) || attrs[i].Name != want[i].Name || attrs[i].Value != want[i].Value {
			t.Errorf("attribute %d = %+v, want %+v", i, attrs[i], want[i])
		}
	}
	for name, wantName := range map[string]string{"CN": "CN", "S": "ST", "EMAILADDRESS": "E", "T": "TITLE"} {
		if got := TypeName(attributeOIDs[name]); got != wantName {
			t.Errorf("TypeName(%s) = %s, want %s", name, got, wantName)
		}
	}
	if got := TypeName([]int{1, 2, 3}); got != "1.2.3" {
		t.Errorf("TypeName(1.2.3) = %s", got)
	}
}
