// Package scep builds and reads the messages of the Simple Certificate
// Enrolment Protocol (RFC 8894): capabilities, the GetCACert answer, CA
// fingerprints, certificate requests carrying a challengePassword, the
// pkiMessages PKCSReq, RenewalReq, CertPoll, GetCert and GetCRL, and the
// server's CertRep.
//
// The package knows no HTTP and no Kubernetes: it turns values into DER and
// DER into values. Transport lives in package scepclient. Every choice that
// depends on the server (content cipher, digest, recipient) is passed in per
// message, so enrollments to servers with different capabilities can run
// concurrently; nothing here keeps package-level mutable state.
package scep
