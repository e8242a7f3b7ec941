package main

import (
	"context"
	"crypto"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/scep-operator/scep-operator/internal/scep"
)

func runCACert(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var sf serverFlags
	var out string
	fs := flag.NewFlagSet("cacert", flag.ContinueOnError)
	sf.register(fs, true)
	fs.StringVar(&out, "out", "", "write the certificates as PEM to this file")
	if err := parse(fs, args, stderr); err != nil {
		return helpOK(err)
	}
	c, err := sf.client(stderr)
	if err != nil {
		return err
	}
	pin, err := sf.pin()
	if err != nil {
		return err
	}
	certs, err := c.GetCACert(ctx)
	if err != nil {
		return err
	}
	if pin != nil {
		if certs, err = certs.Pin(*pin); err != nil {
			return err
		}
	}
	for i, cc := range certs.Certs {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "role:     %s\n", cc.Role)
		fmt.Fprintf(stdout, "subject:  %s\n", cc.Subject)
		fmt.Fprintf(stdout, "issuer:   %s\n", cc.Issuer)
		fmt.Fprintf(stdout, "notAfter: %s\n", cc.NotAfter.UTC().Format(time.RFC3339))
		fmt.Fprintf(stdout, "key:      %s\n", keyDescription(cc.PublicKey))
		fmt.Fprintf(stdout, "SHA-256:  %s\n", scep.FingerprintOf(cc.Certificate, crypto.SHA256).Hex())
		fmt.Fprintf(stdout, "SHA-1:    %s\n", scep.FingerprintOf(cc.Certificate, crypto.SHA1).Hex())
		fmt.Fprintf(stdout, "MD5:      %s\n", scep.FingerprintOf(cc.Certificate, crypto.MD5).Hex())
	}
	for _, ig := range certs.Ignored {
		fmt.Fprintf(stderr, "ignored (not vouched for by the pinned CA): %s\n", ig.Subject)
	}
	if out != "" {
		var buf []byte
		for _, cc := range certs.Certs {
			buf = append(buf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cc.Raw})...)
		}
		if err := os.WriteFile(out, buf, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %d certificate(s) to %s\n", len(certs.Certs), out)
	}
	return nil
}
