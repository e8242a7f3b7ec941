package node

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// CertwatchMountPath is where CertwatchPod mounts the Secret.
const CertwatchMountPath = "/etc/tls"

// CertwatchPod is a pod bound to the node that mounts secretName read-only
// at CertwatchMountPath and runs certwatch: it logs a "volume:" line (see
// ParseReports) whenever the files change and, when port is not zero,
// serves TLS with them on 127.0.0.1:port (host network).
func CertwatchPod(namespace, name, secretName string, port int) *corev1.Pod {
	args := []string{"-dir", CertwatchMountPath}
	if port != 0 {
		args = append(args, "-listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeName:                      Name,
			HostNetwork:                   true,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](2),
			RestartPolicy:                 corev1.RestartPolicyAlways,
			Containers: []corev1.Container{{
				Name:            "certwatch",
				Image:           CertwatchImage.Ref,
				ImagePullPolicy: corev1.PullNever,
				Args:            args,
				VolumeMounts:    []corev1.VolumeMount{{Name: "tls", MountPath: CertwatchMountPath, ReadOnly: true}},
			}},
			Volumes: []corev1.Volume{{
				Name:         "tls",
				VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secretName}},
			}},
		},
	}
}

// Report is one "volume:" line of certwatch: what the pod read from its
// Secret volume.
type Report struct {
	// Serial is tls.crt's serial number in hex.
	Serial string
	// DNSNames are tls.crt's DNS names.
	DNSNames []string
	// NotAfter is tls.crt's expiry (RFC 3339).
	NotAfter string
	// KeyMatches says tls.key is the private key of tls.crt.
	KeyMatches bool
	// ChainVerified says tls.crt verifies against ca.crt.
	ChainVerified bool
	// CASHA256 is the SHA-256 of ca.crt's certificate (DER), in hex.
	CASHA256 string
	// Err is what did not fit, if anything.
	Err string
	// Line is the line as logged.
	Line string
}

// ParseReports reads certwatch's "volume:" lines from a pod log, oldest
// first; other lines are skipped.
func ParseReports(log string) ([]Report, error) {
	var out []Report
	for _, line := range strings.Split(log, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "volume:")
		if !ok {
			continue
		}
		r := Report{Line: strings.TrimSpace(line)}
		if before, errPart, found := strings.Cut(rest, " err="); found {
			rest = before
			if r.Err, _ = strconv.Unquote(errPart); r.Err == "" {
				r.Err = errPart
			}
		}
		for _, field := range strings.Fields(rest) {
			k, v, ok := strings.Cut(field, "=")
			if !ok {
				return nil, fmt.Errorf("certwatch line %q: field %q is not key=value", line, field)
			}
			switch k {
			case "serial":
				r.Serial = v
			case "dns":
				if v != "" {
					r.DNSNames = strings.Split(v, ",")
				}
			case "notAfter":
				r.NotAfter = v
			case "key":
				r.KeyMatches = v == "matches"
			case "chain":
				r.ChainVerified = v == "verified"
			case "ca-sha256":
				r.CASHA256 = v
			}
		}
		out = append(out, r)
	}
	return out, nil
}
