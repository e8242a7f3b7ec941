package controllers

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	scepv1alpha1 "github.com/scep-operator/scep-operator/api/v1alpha1"
	"github.com/scep-operator/scep-operator/internal/metrics"
	"github.com/scep-operator/scep-operator/internal/profiles"
	"github.com/scep-operator/scep-operator/internal/scep"
	"github.com/scep-operator/scep-operator/internal/scepclient"
	"github.com/scep-operator/scep-operator/internal/servertext"
)

// Events of a CA rollover (RFC 8894 section 4.7).
const (
	// EventNextCAPublished: the server announced a next CA certificate
	// through GetNextCACert, signed by a certificate trusted now.
	EventNextCAPublished = "NextCAPublished"
	// EventCASwitched: GetCACert now answers with the announced CA.
	EventCASwitched = "CASwitched"
	// EventNextCAInvalid: GetNextCACert failed or its answer did not
	// verify; nothing of it is trusted or shown.
	EventNextCAInvalid = "NextCAInvalid"
)

// followRollover keeps the profile's view of a CA rollover: it notices a
// switch to a CA announced before, asks the server for its next CA when it
// announces GetNextCACert, shows it in status.nextCACertificates and, for a
// pinned profile, records it in status.caRollover so that the signer trusts
// it when GetCACert serves it (profiles.TrustedPins). previous is the
// status before this check. Rollover trouble never makes the profile
// unready: the current CA still issues. It returns the next CA certificates
// that GetNextCACert announced and that verified, and known false when
// GetNextCACert failed this time (what was published before stays).
func (r *ProfileReconciler) followRollover(ctx context.Context, p scepv1alpha1.Profile, previous *scepv1alpha1.SCEPProfileStatus, info *scepclient.ServerInfo) (next []*x509.Certificate, known bool) {
	status := p.GetStatus()
	key := profiles.KeyOf(p).String()
	pins, _ := profiles.Pins(p.GetSpec()) // checked before the server was asked
	digest := ""
	if len(pins) > 0 {
		digest = profiles.PinsDigest(pins)
	}
	if status.CARollover != nil && status.CARollover.PinsDigest != digest {
		// The admin edited the pins: what they vouched for is forgotten.
		status.CARollover = nil
	}

	if iss := info.Issuer; iss != nil {
		fp := scep.FingerprintOf(iss, crypto.SHA256).Hex()
		if wasAnnounced(previous, fp) && !wasCurrent(previous, fp) {
			now := metav1.NewTime(r.now())
			if status.CARollover != nil {
				status.CARollover.SwitchedAt = &now
			}
			metrics.CARollover.WithLabelValues(key, metrics.RolloverSwitched).Inc()
			r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, EventCASwitched, "Check", "switched to the CA certificate %s (SHA-256 %s) that the server announced through GetNextCACert", servertext.Quote(iss.Subject.String(), 256), fp)
		}
	}

	announced, err := r.Registry.NextCA(ctx, p, info)
	switch {
	case errors.Is(err, scepclient.ErrNoNextCA):
		status.NextCACertificates = nil
		return nil, true
	case err != nil:
		// The last verified answer stays shown; this one is not trusted.
		log.FromContext(ctx).Info("GetNextCACert failed", "error", err.Error())
		r.Recorder.Eventf(p, nil, corev1.EventTypeWarning, EventNextCAInvalid, "Check", "GetNextCACert: %v", err)
		return nil, false
	}
	fresh := scep.NewCAs(announced, info.CACerts)
	status.NextCACertificates = nil
	if len(fresh) == 0 {
		// The server announces the CA it already serves.
		return nil, true
	}
	for _, cc := range announced.Certs {
		if len(status.NextCACertificates) == 8 {
			break
		}
		notBefore := metav1.NewTime(cc.NotBefore)
		status.NextCACertificates = append(status.NextCACertificates, scepv1alpha1.CACertificate{
			Role: string(cc.Role), Subject: servertext.Clean(cc.Subject.String(), 256), NotBefore: &notBefore,
			NotAfter: metav1.NewTime(cc.NotAfter), SHA256Fingerprint: scep.FingerprintOf(cc.Certificate, crypto.SHA256).Hex(),
		})
	}
	for _, ca := range fresh {
		fp := scep.FingerprintOf(ca, crypto.SHA256).Hex()
		if digest != "" {
			if status.CARollover == nil {
				status.CARollover = &scepv1alpha1.CARollover{PinsDigest: digest}
			}
			if !slices.Contains(status.CARollover.Fingerprints, fp) {
				status.CARollover.Fingerprints = append(status.CARollover.Fingerprints, fp)
				if n := len(status.CARollover.Fingerprints); n > profiles.MaxRolloverPins {
					status.CARollover.Fingerprints = status.CARollover.Fingerprints[n-profiles.MaxRolloverPins:]
				}
			}
		}
		if !wasAnnounced(previous, fp) {
			metrics.CARollover.WithLabelValues(key, metrics.RolloverNextCAPublished).Inc()
			r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, EventNextCAPublished, "Check", "the server announced its next CA certificate %s (SHA-256 %s, valid from %s); it is used when GetCACert serves it", servertext.Quote(ca.Subject.String(), 256), fp, ca.NotBefore.UTC().Format("2006-01-02T15:04:05Z"))
		}
	}
	return fresh, true
}

// wasAnnounced reports whether the status showed fp as a next CA.
func wasAnnounced(st *scepv1alpha1.SCEPProfileStatus, fp string) bool {
	if st == nil {
		return false
	}
	for _, c := range st.NextCACertificates {
		if c.SHA256Fingerprint == fp {
			return true
		}
	}
	return st.CARollover != nil && slices.Contains(st.CARollover.Fingerprints, fp)
}

// wasCurrent reports whether the status showed fp among the CA certificates.
func wasCurrent(st *scepv1alpha1.SCEPProfileStatus, fp string) bool {
	if st == nil {
		return false
	}
	for _, c := range st.CACertificates {
		if c.SHA256Fingerprint == fp {
			return true
		}
	}
	return false
}
