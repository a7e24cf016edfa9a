package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// Enable turns the restriction on with the named backend ("auto" probes for
// the best one). Enabling what is already enabled re-applies the rules, which
// repairs a ruleset someone flushed.
func (e *Engine) Enable(ctx context.Context, actor Actor, backend string) (Result, error) {
	return e.EnableIn(ctx, actor, backend, "")
}

// cgroupBackend is a backend that attaches to a cgroup (bpf); it says which
// one it would use when the policy names none.
type cgroupBackend interface {
	CgroupPath() (string, error)
}

// EnableIn is Enable for a backend attached to cgroup (bpf; empty: the
// backend's own default, which is stored when the backend can tell it, so
// the daemon re-converges the same attachment at boot). Backends that do
// not attach to cgroups ignore it.
func (e *Engine) EnableIn(ctx context.Context, actor Actor, backend, cgroup string) (Result, error) {
	if backend == "" {
		backend = policy.BackendAuto
	}
	if err := policy.ValidCgroup(cgroup); err != nil {
		return Result{}, invalid(fmt.Errorf("--cgroup: %w", err))
	}
	choice, err := enforce.Select(ctx, backend, e.cfg.Backends)
	if err != nil {
		if backend != policy.BackendAuto && e.unknownBackend(backend) {
			return Result{}, invalid(err)
		}
		return Result{}, err
	}
	b := choice.Backend
	cgroup = storedCgroup(b, cgroup)
	e.log.Info("backend chosen", "backend", b.Name(), "reason", choice.Reason, "cgroup", cgroup)
	return e.change(ctx, actor, "enable", b.Name(), func(p *policy.Policy, _ *policy.Directory) (string, error) {
		if p.Enabled && p.Backend == b.Name() && p.Cgroup == cgroup {
			// Re-applying (the web UI names the stored backend) keeps what
			// the enable that chose it found.
			if p.BackendWhy == nil {
				p.BackendWhy = choice.Notes()
			}
			return fmt.Sprintf("SMTP restriction already enabled (backend %s); rules re-applied", b.Name()), nil
		}
		p.Enabled, p.Backend, p.Cgroup, p.BackendWhy = true, b.Name(), cgroup, choice.Notes()
		return fmt.Sprintf("SMTP restriction enabled (backend %s)", b.Name()), nil
	})
}

// storedCgroup is the cgroup to keep with a policy enabled with b: none for
// backends that do not attach to cgroups, else cgroup or, when empty, the
// one b attaches to by default, so that a later converge (the daemon at
// boot, with another default) attaches to the same one.
func storedCgroup(b enforce.Backend, cgroup string) string {
	if !b.Describe().AttachesToCgroup {
		return "" // nothing to attach: do not store a cgroup nobody uses
	}
	if cb, ok := b.(cgroupBackend); ok && cgroup == "" {
		if cg, err := cb.CgroupPath(); err == nil {
			return cg
		}
	}
	return cgroup
}

// Disable turns the restriction off and removes smtpguard's kernel rules.
// Disabling what is already disabled still removes any leftover rules.
func (e *Engine) Disable(ctx context.Context, actor Actor) (Result, error) {
	return e.changeWith(ctx, actor, "disable", "", changeOptions{removeLeftovers: true}, func(p *policy.Policy, _ *policy.Directory) (string, error) {
		msg := "SMTP restriction disabled: every user may connect to remote SMTP servers"
		if !p.Enabled {
			msg = "SMTP restriction already disabled"
		}
		p.Enabled = false
		return msg, nil
	})
}

// Allow lets a user or group connect. ref is a name or a numeric id.
func (e *Engine) Allow(ctx context.Context, actor Actor, kind policy.PrincipalKind, ref string) (Result, error) {
	return e.AllowWith(ctx, actor, kind, ref, AllowOptions{})
}

// AllowWith is Allow with options: allowing one already allowed changes
// only what the options name.
func (e *Engine) AllowWith(ctx context.Context, actor Actor, kind policy.PrincipalKind, ref string, opts AllowOptions) (Result, error) {
	rate, rateText, err := opts.rate()
	if err != nil {
		return Result{}, err
	}
	return e.change(ctx, actor, "allow", string(kind)+" "+ref+rateText, func(p *policy.Policy, dir *policy.Directory) (string, error) {
		pr, err := dir.ResolvePrincipal(kind, ref)
		if err != nil {
			return "", invalid(err)
		}
		if kind == policy.KindUser && pr.ID == 0 {
			return "root (uid 0) is always allowed; nothing changed", nil
		}
		if opts.Rate != nil {
			pr.Rate = rate
		}
		if err := p.Allow(pr); err != nil {
			if errors.Is(err, policy.ErrAlreadyAllowed) {
				return setAllowanceRate(p, pr, opts.Rate != nil), nil
			}
			return "", invalid(err)
		}
		msg := fmt.Sprintf("%s allowed to connect to remote SMTP servers", pr)
		if pr.Rate.Set {
			msg += ", " + rateWords(pr.Rate.Rate)
		}
		if pr.ByID && pr.Name == "" {
			// Allowed anyway: processes can run under a uid no account file
			// names (containers, accounts from a directory service or made
			// later), and the kernel matches the number.
			msg += fmt.Sprintf("; note: no %s on this host has id %d yet (allowed anyway)", map[policy.PrincipalKind]string{policy.KindUser: "account", policy.KindGroup: "group"}[kind], pr.ID)
		}
		return msg, nil
	})
}

// Revoke withdraws what Allow granted.
func (e *Engine) Revoke(ctx context.Context, actor Actor, kind policy.PrincipalKind, ref string) (Result, error) {
	return e.change(ctx, actor, "revoke", string(kind)+" "+ref, func(p *policy.Policy, dir *policy.Directory) (string, error) {
		pr, err := dir.ResolvePrincipal(kind, ref)
		if err != nil {
			// A deleted account can still be revoked by the name it was allowed under.
			pr = policy.Principal{Kind: kind, Name: ref}
			if rerr := p.Revoke(pr); rerr == nil {
				return fmt.Sprintf("%s revoked", pr), nil
			}
			return "", invalid(err)
		}
		root := kind == policy.KindUser && pr.ID == 0
		if err := p.Revoke(pr); err != nil {
			if errors.Is(err, policy.ErrNotAllowed) {
				if root {
					return "root (uid 0) is always allowed and cannot be revoked; nothing changed", nil
				}
				return fmt.Sprintf("%s was not allowed; nothing changed", pr), nil
			}
			return "", invalid(err)
		}
		if root {
			return fmt.Sprintf("%s removed from the allowed list; root (uid 0) is always allowed all the same", pr), nil
		}
		return fmt.Sprintf("%s revoked", pr), nil
	})
}

// SetPorts replaces the restricted ports ("25,465,587").
func (e *Engine) SetPorts(ctx context.Context, actor Actor, ports string) (Result, error) {
	parsed, err := policy.ParsePorts(ports)
	if err != nil {
		return Result{}, invalid(err)
	}
	list := policy.PortsString(parsed)
	return e.change(ctx, actor, "set ports", list, func(p *policy.Policy, _ *policy.Directory) (string, error) {
		p.Ports = parsed
		return "restricted ports set to " + list, nil
	})
}

// SetMode sets what happens to a connection that is not allowed.
func (e *Engine) SetMode(ctx context.Context, actor Actor, mode string) (Result, error) {
	m, err := policy.ParseMode(mode)
	if err != nil {
		return Result{}, invalid(err)
	}
	return e.change(ctx, actor, "set mode", string(m), func(p *policy.Policy, _ *policy.Directory) (string, error) {
		p.Mode = m
		return "mode set to " + string(m), nil
	})
}

// SetAllowLocal sets whether loopback and this host's own addresses stay
// reachable for everyone.
func (e *Engine) SetAllowLocal(ctx context.Context, actor Actor, value string) (Result, error) {
	on, err := policy.ParseOnOff(value)
	if err != nil {
		return Result{}, invalid(err)
	}
	word := map[bool]string{true: "on", false: "off"}[on]
	return e.change(ctx, actor, "set allow-local", word, func(p *policy.Policy, _ *policy.Directory) (string, error) {
		p.AllowLocal = on
		return "allow-local set to " + word, nil
	})
}

// Import replaces the whole policy with a policy file's, validated first.
func (e *Engine) Import(ctx context.Context, actor Actor, f policy.File, source string) (Result, error) {
	if f.Backend != policy.BackendAuto && e.unknownBackend(f.Backend) {
		return Result{}, invalid(fmt.Errorf("backend: unknown backend %q in the policy file", f.Backend))
	}
	var chosen, cgroup string
	var why map[string]string
	if f.Enabled {
		if err := policy.ValidCgroup(f.Cgroup); err != nil {
			return Result{}, invalid(fmt.Errorf("cgroup: %w", err))
		}
		// Probe where the file's cgroup says, never near the root.
		choice, err := enforce.Select(ctx, f.Backend, enforce.InCgroup(e.cfg.Backends, f.Cgroup))
		if err != nil {
			if f.Backend != policy.BackendAuto && e.unknownBackend(f.Backend) {
				return Result{}, invalid(fmt.Errorf("backend: %w", err))
			}
			return Result{}, err
		}
		chosen, why = choice.Backend.Name(), choice.Notes()
		cgroup = storedCgroup(choice.Backend, f.Cgroup)
		e.log.Info("backend chosen", "backend", chosen, "reason", choice.Reason, "cgroup", cgroup)
	}
	return e.change(ctx, actor, "import", source, func(p *policy.Policy, dir *policy.Directory) (string, error) {
		np, err := f.Policy(dir)
		if err != nil {
			return "", invalid(err)
		}
		if chosen != "" {
			np.Backend, np.Cgroup, np.BackendWhy = chosen, cgroup, why
		} else if np.Backend == policy.BackendAuto {
			np.Backend = p.Backend // keep the last backend used for a later enable
		}
		*p = np
		return "policy imported from " + source, nil
	})
}
