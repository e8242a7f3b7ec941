package scepclient

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/scep-operator/scep-operator/internal/scep"
)

// ServerInfo is what a client learns from a server before it sends a
// request: capabilities, the (pinned) CA and RA certificates, whom to
// encrypt to and with what. Callers cache it (the operator per profile), so
// a steady enrollment costs one PKIOperation round trip.
type ServerInfo struct {
	// Caps are the server's capabilities.
	Caps scep.Capabilities
	// CACerts are the certificates requests are encrypted to and replies
	// verified with; after a pin, only those the pinned CA vouches for.
	CACerts *scep.CACerts
	// Recipient is the certificate requests are encrypted to.
	Recipient *x509.Certificate
	// Issuer is the CA that issues certificates (CertPoll's issuer).
	Issuer *x509.Certificate
	// Algorithms are the cipher and digest chosen from Caps, at or above
	// Config.Floor.
	Algorithms scep.Algorithms
}

// Discover asks the server for its capabilities and certificates and, when
// pin is set, checks that one of them has the pinned fingerprint; a mismatch
// is a *scep.FingerprintMismatchError and nothing further may be sent.
func (c *Client) Discover(ctx context.Context, pin *scep.Fingerprint) (*ServerInfo, error) {
	var opts DiscoverOptions
	if pin != nil {
		opts.Pins = []scep.Fingerprint{*pin}
	}
	return c.DiscoverWith(ctx, opts)
}

// DiscoverOptions say which certificates of a GetCACert answer to trust.
type DiscoverOptions struct {
	// Pins are the fingerprints of which one must match a certificate of
	// the answer (old and new CA during a rollover); none trusts the
	// answer as it comes.
	Pins []scep.Fingerprint
	// Now, when set, drops certificates of the answer that expired by then
	// as long as a valid CA certificate remains (scep.CACerts.Current), so
	// that the client switches to the new CA when the old one expires.
	Now time.Time
}

// DiscoverWith is Discover with several pins and the switch to a new CA.
func (c *Client) DiscoverWith(ctx context.Context, opts DiscoverOptions) (*ServerInfo, error) {
	caps, err := c.GetCACaps(ctx)
	if err != nil {
		return nil, err
	}
	certs, err := c.GetCACert(ctx)
	if err != nil {
		return nil, err
	}
	if len(opts.Pins) > 0 {
		if certs, err = certs.PinAny(opts.Pins...); err != nil {
			return nil, err
		}
	}
	if !opts.Now.IsZero() {
		certs = certs.Current(opts.Now)
	}
	recipient, err := certs.Recipient()
	if err != nil {
		return nil, err
	}
	floor := DefaultFloor
	if c.cfg.Floor != nil {
		floor = *c.cfg.Floor
	}
	algs, err := floor.Select(caps)
	if err != nil {
		return nil, err
	}
	return &ServerInfo{
		Caps:       caps,
		CACerts:    certs,
		Recipient:  recipient,
		Issuer:     certs.Issuer(),
		Algorithms: algs,
	}, nil
}

// MessageOptions returns the options for a message to this server.
func (s *ServerInfo) MessageOptions(signer *scep.Signer, txID scep.TransactionID) scep.MessageOptions {
	return scep.MessageOptions{Signer: signer, Recipient: s.Recipient, Algorithms: s.Algorithms, TransactionID: txID}
}

// Send delivers msg and reads the reply: SUCCESS and PENDING come back as a
// CertRep, FAILURE as a CertRep with a *scep.FailureError, a broken reply as
// a *scep.ReplyError, transport trouble as the HTTP or network error.
func (c *Client) Send(ctx context.Context, s *ServerInfo, msg *scep.Message) (*scep.CertRep, error) {
	der, err := c.PKIOperation(ctx, s.Caps, msg.Raw)
	if err != nil {
		return nil, err
	}
	return msg.ReadReply(der, s.CACerts.All())
}

// CertPoll builds and sends a CertPoll for the pending transaction txID of a
// request with subject (DER Name), signed by the signer of the PKCSReq.
func (c *Client) CertPoll(ctx context.Context, s *ServerInfo, signer *scep.Signer, txID scep.TransactionID, subject []byte) (*scep.CertRep, error) {
	if s.Issuer == nil {
		return nil, fmt.Errorf("the server's GetCACert answer names no CA to poll for")
	}
	msg, err := scep.NewCertPoll(s.Issuer.RawSubject, subject, s.MessageOptions(signer, txID))
	if err != nil {
		return nil, err
	}
	return c.Send(ctx, s, msg)
}
