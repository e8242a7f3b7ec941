package scepclient

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

// ProbeGETLength asks whether the server takes a GET PKIOperation query of
// about queryBytes bytes, without enrolling anything: the message is zero
// bytes in base64, which no server can read as a pkiMessage. It returns
// the HTTPError when the server refuses the length (IIS's 404.15, or 414
// URI Too Long), and nil for any other answer: the server read the query
// and refused the message, as it must. scepctl doctor uses it for servers
// that take GET only.
func (c *Client) ProbeGETLength(ctx context.Context, queryBytes int) error {
	// operation=PKIOperation&message= is 31 bytes; "A" is base64 for
	// zero bits and needs no URL escaping.
	n := max(queryBytes-31, 4) &^ 3
	req, err := http.NewRequest(http.MethodGet, c.endpoint(OpPKIOperation, strings.Repeat("A", n)), nil)
	if err != nil {
		return err
	}
	_, _, err = c.do(ctx, OpPKIOperation, req)
	var httpErr *HTTPError
	if errors.As(err, &httpErr) && (httpErr.StatusCode == http.StatusRequestURITooLong || (httpErr.StatusCode == http.StatusNotFound && httpErr.Recognized != "")) {
		return err
	}
	return nil
}
