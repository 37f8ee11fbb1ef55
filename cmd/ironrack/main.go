// Command ironrack takes racked servers from "just cabled" to "serving in a
// tier" and keeps them accounted for. See README.md for a tour.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ironrack/ironrack/cmd/ironrack/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ironrack:", err)
		os.Exit(1)
	}
}
