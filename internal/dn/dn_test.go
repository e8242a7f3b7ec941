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
