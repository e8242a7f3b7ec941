// Package soak is the chaos soak (`make soak`): for a set time, cert-manager's
// real controllers, two scep-operator processes with leader election (the
// chart's arguments and RBAC) and three SCEP servers (test/scepserver
// answering PENDING and issuing on a later CertPoll, MicroMDM, step-ca),
// each behind a FaultProxy, serve Certificates created, renewed and deleted
// at a steady rate in several namespaces, while faults hit at random:
// SIGKILL of the leader or the standby, kube-apiserver stopped and started
// again (etcd keeps the data), etcd restarted, a server down, slow,
// resetting, answering 5xx, or losing answers after the request was sent.
// At the end it heals everything, waits for every Certificate to be Ready
// and accounts from the servers' own records: with CertPoll, exactly one
// certificate per request; without, duplicates only as many as answers
// were lost. Operator memory and goroutines are sampled throughout.
//
// The soak is built only with the "soak" build tag, so `make test` neither
// compiles nor runs it:
//
//	make soak                          # SOAK_DURATION=30m
//	go test -tags soak ./test/soak -run TestSoak -timeout 90m -args -soak.duration=3m -soak.seed=7
package soak
