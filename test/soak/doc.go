// Package soak is the chaos soak (`make soak`): for a set time, cert-manager's
// real controllers, two scep-operator processes with leader election (the
// chart's arguments and RBAC) and three SCEP servers (the NDES emulator,
// whose requests sometimes wait PENDING for a CA manager's approval,
// MicroMDM, step-ca), each behind a FaultProxy, serve Certificates created,
// renewed and deleted at a steady rate in several namespaces, while faults
// hit at random: SIGKILL of the leader or the standby, kube-apiserver
// stopped and started again (etcd keeps the data), etcd restarted, a server
// down, slow, resetting, answering 5xx, losing answers after the request
// was sent, or killed and restarted with its data. At the end it heals
// everything, waits for every Certificate to be Ready and accounts per
// CertificateRequest (one transaction each): with CertPoll (NDES, from its
// own records), exactly one certificate; without (from what the proxy
// passed), every second certificate matched to a logged fault that lost an
// answer. Operator memory and goroutines are sampled throughout.
//
// The soak is built only with the "soak" build tag, so `make test` neither
// compiles nor runs it:
//
//	make soak                          # SOAK_DURATION=30m
//	go test -tags soak ./test/soak -run TestSoak -timeout 90m -args -soak.duration=3m -soak.seed=7
package soak
