package main

import (
	"context"
	"flag"
	"fmt"
	"io"
)

func runCaps(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var sf serverFlags
	fs := flag.NewFlagSet("caps", flag.ContinueOnError)
	sf.register(fs, false)
	if err := parse(fs, args, stderr); err != nil {
		return helpOK(err)
	}
	c, err := sf.client(stderr)
	if err != nil {
		return err
	}
	caps, err := c.GetCACaps(ctx)
	if err != nil {
		return err
	}
	for _, cp := range caps.Strings() {
		fmt.Fprintln(stdout, cp)
	}
	return nil
}

// helpOK turns -h into success.
func helpOK(err error) error {
	if err == flag.ErrHelp {
		return nil
	}
	return err
}
