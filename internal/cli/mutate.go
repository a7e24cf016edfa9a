package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/engine"
)

// mutation runs one engine operation and reports its result.
func (e *env) mutation(cmd *cobra.Command, asJSON bool, op func(ctx context.Context, eng *engine.Engine) (engine.Result, error)) error {
	ctx := cmd.Context()
	res, err := e.runOp(ctx, op)
	if err != nil && errors.Is(err, enforce.ErrOwnedElsewhere) && e.daemon == nil {
		// A daemon that was starting when the command looked for one has
		// taken the kernel rules over since: the engine changed nothing
		// (the kernel refused, the store rolled back), so the command runs
		// again, once, looking for the daemon anew.
		e.daemonChecked = false
		res, err = e.runOp(ctx, op)
	}
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(e.stdio.Out, struct {
			Changed bool   `json:"changed"`
			Message string `json:"message"`
		}{res.Changed, res.Message})
	}
	fmt.Fprintln(e.stdio.Out, res.Message)
	return nil
}

// runOp opens the engine, runs op and closes the engine.
func (e *env) runOp(ctx context.Context, op func(ctx context.Context, eng *engine.Engine) (engine.Result, error)) (engine.Result, error) {
	eng, err := e.engine(ctx)
	if err != nil {
		return engine.Result{}, err
	}
	defer eng.Close()
	return op(ctx, eng)
}
