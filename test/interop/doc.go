// Package interop holds the SCEP client's interoperability tests against
// real servers (MicroMDM's scep server in-process, step-ca's SCEP
// provisioner as a process) and the misbehaving server in test/scepserver,
// and drives the scepctl binary as an admin would.
package interop
