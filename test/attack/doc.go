// Package attack is the attack suite of issue 11: a namespace user tries to
// obtain from scep-operator more than a profile allows, and each attempt
// must be refused clearly (a condition with a reason, a message naming the
// field, a Warning Event where the product promises one) with nothing
// violating the profile reaching a SCEP server.
//
// The suite runs the whole product, as test/e2e does: a real kube-apiserver
// and etcd with the Helm chart applied, cert-manager's real controllers
// (its approver approves every request, as in a cluster that uses it), and
// the operator in-process as the chart's ServiceAccount. The attacker is a
// user with a Role in namespace tenant only (Certificates,
// CertificateRequests, SCEPProfiles and Secrets there, nothing
// cluster-wide); a victim workload lives in namespace victim; both
// namespaces are granted to Rebuild by the chart. The peers are in-process
// SCEP servers (test/scepserver) and the NDES emulator (test/ndes), which
// record every pkiMessage and CSR they receive, and plain listeners that
// count connections on another loopback address.
//
// Every class of attack has a control row: the same request without the
// attack, which succeeds, so that each refusal is shown to be the
// attack's. docs/security.md lists each attack with the test that refuses it.
package attack
