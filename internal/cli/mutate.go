package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/engine"
)

// mutation runs one engine operation and reports its result.
func (e *env) mutation(cmd *cobra.Command, asJSON bool, op func(ctx context.Context, eng *engine.Engine) (engine.Result, error)) error {
	ctx := cmd.Context()
	eng, err := e.engine(ctx)
	if err != nil {
		return err
	}
	defer eng.Close()
	res, err := op(ctx, eng)
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
