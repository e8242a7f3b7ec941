package scepclient

import (
	"context"
	"errors"
	"net/http"

	"github.com/scep-operator/scep-operator/internal/scep"
)

// OpGetNextCACert is RFC 8894 section 4.7's operation for a CA rollover.
const OpGetNextCACert = "GetNextCACert"

// ErrNoNextCA says the server does not announce GetNextCACert.
var ErrNoNextCA = errors.New("the server does not announce GetNextCACert")

// GetNextCACert asks the server for the CA certificate that will replace
// the current one, when its capabilities list GetNextCACert, and checks
// that the answer is signed by one of s's certificates (the CA and RA
// certificates trusted now, after the pin), as RFC 8894 section 4.7.1
// requires. It returns ErrNoNextCA when the server does not announce the
// operation; the answer is capped like GetCACert's.
func (c *Client) GetNextCACert(ctx context.Context, s *ServerInfo) (*scep.CACerts, error) {
	if !s.Caps.Has(scep.CapGetNextCACert) {
		return nil, ErrNoNextCA
	}
	req, err := http.NewRequest(http.MethodGet, c.endpoint(OpGetNextCACert, c.cfg.CAIdentifier), nil)
	if err != nil {
		return nil, err
	}
	body, ct, err := c.do(ctx, OpGetNextCACert, req)
	if err != nil {
		return nil, err
	}
	next, err := scep.ParseNextCACert(body, s.CACerts)
	if err != nil {
		return nil, c.contentError(OpGetNextCACert, ct, body, err)
	}
	return next, nil
}
