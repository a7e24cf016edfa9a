// Command smtpguard restricts outgoing SMTP so that only the mail server, root
// and allowed users can reach remote mail servers.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/smtpguard/smtpguard/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr})
	stop()
	os.Exit(code)
}
