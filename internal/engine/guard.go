package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/store"
)

// Kernel states of a disabled policy besides "not enforcing".
const (
	// KernelPolicyMissing: the database holds no policy at all (it was
	// deleted, emptied or replaced) while smtpguard's rules are in the
	// kernel. They stay in force until an explicit enable, import or disable.
	KernelPolicyMissing = "policy missing"
	// KernelLeftovers: the policy is disabled but a backend's rules are still
	// in the kernel.
	KernelLeftovers = "leftovers"
)

// ErrPolicyMissing marks the refusal to treat a database without a policy as
// "disabled" while smtpguard's rules are in the kernel: SQLite opens a
// missing or empty file as a new, empty database, and converging to its
// default policy would lift the restriction without anyone asking.
var ErrPolicyMissing = errors.New("the database holds no policy but smtpguard's rules are in the kernel")

// present lists the backends whose kernel objects exist. A backend that
// cannot work on this host has none.
func (e *Engine) present(ctx context.Context) ([]string, error) {
	var names []string
	var errs []error
	for _, b := range e.cfg.Backends {
		ok, err := b.Present(ctx)
		switch {
		case errors.Is(err, enforce.ErrNotSupported):
		case err != nil:
			errs = append(errs, fmt.Errorf("check for %s rules in the kernel: %w", b.Name(), err))
		case ok:
			names = append(names, b.Name())
		}
	}
	return names, errors.Join(errs...)
}

// missingPolicy returns an error wrapping ErrPolicyMissing when the stored
// policy was never written (revision 0: a new, emptied or deleted database)
// while smtpguard's rules are in the kernel, and an error when that cannot be
// checked: both mean "do not converge to disabled".
func (e *Engine) missingPolicy(ctx context.Context, meta store.Meta) error {
	if meta.Revision != 0 {
		return nil
	}
	names, err := e.present(ctx)
	if err != nil {
		return fmt.Errorf("the database holds no policy and the kernel cannot be checked for smtpguard's rules, so they are left as they are: %w", err)
	}
	if len(names) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s; to fix: %s", ErrPolicyMissing, e.missingWhy(names), e.missingFix())
}

func (e *Engine) missingWhy(names []string) string {
	path := filepath.Join(e.cfg.StateDir, store.FileName)
	how := "holds no policy (was it deleted, emptied or replaced?)"
	if e.fresh != "" {
		how = e.fresh + " when opened"
	}
	return fmt.Sprintf("%s %s; the %s rules in the kernel stay in force", path, how, strings.Join(names, " and "))
}

func (e *Engine) missingFix() string {
	return fmt.Sprintf("restore %s from a backup and restart the daemon, or 'smtpguard import FILE' from an export, or run 'smtpguard disable' to lift the restriction on purpose",
		filepath.Join(e.cfg.StateDir, store.FileName))
}

// guardChange refuses a change that would store a policy over a missing one
// while the kernel enforces rules: "allow user" on an emptied database would
// store a disabled policy, and the daemon would then lift the restriction.
// Enable, import and disable replace the whole policy on purpose.
func (e *Engine) guardChange(ctx context.Context, op string, meta store.Meta) error {
	switch op {
	case "enable", "disable", "import":
		return nil
	}
	return e.missingPolicy(ctx, meta)
}

// disabledKernel describes the kernel under a disabled policy: nothing, or
// rules left behind, or rules a lost database no longer describes.
func (e *Engine) disabledKernel(ctx context.Context, meta store.Meta) Kernel {
	names, err := e.present(ctx)
	switch {
	case err != nil:
		return Kernel{State: "unknown", Error: "cannot check the kernel for smtpguard's rules: " + err.Error()}
	case len(names) == 0:
		return Kernel{State: "not enforcing"}
	case meta.Revision == 0:
		return Kernel{State: KernelPolicyMissing, Problems: []string{e.missingWhy(names)}, Fix: e.missingFix(), Present: names}
	}
	return Kernel{
		State:    KernelLeftovers,
		Problems: []string{fmt.Sprintf("the %s rules are still in the kernel although the policy is disabled: they still restrict connections", strings.Join(names, " and "))},
		Fix:      "run 'smtpguard disable' to remove them, or 'smtpguard enable' to enforce the stored policy",
		Present:  names,
	}
}
