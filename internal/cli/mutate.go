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
	res, err := e.change(cmd.Context(), op)
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

// change runs one engine operation that changes state, on an engine of its
// own. When the kernel refuses it because a daemon took the rules over since
// the command looked for one (the daemon was starting), the engine changed
// nothing (the kernel refused, the store rolled back) and, told that a
// retry follows, audited nothing: the operation runs again, once, looking
// for the daemon anew, so the change is made through it and audited once.
func (e *env) change(ctx context.Context, op func(ctx context.Context, eng *engine.Engine) (engine.Result, error)) (engine.Result, error) {
	e.retryOwned = true
	res, err := e.runOp(ctx, op)
	e.retryOwned = false
	if err != nil && errors.Is(err, enforce.ErrOwnedElsewhere) && e.daemon == nil {
		e.daemonChecked = false
		res, err = e.runOp(ctx, op)
	}
	return res, err
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
