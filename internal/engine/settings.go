package engine

import (
	"context"
	"fmt"
	"strings"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// Settings are the policy's settings to change at once, as the CLI would type
// them ("25,587", "log", "off"); nil fields keep their value.
type Settings struct {
	Ports, Mode, AllowLocal *string
	// RateLimit is the default rate limit ("100/h" or "off").
	RateLimit *string
}

// SetSettings changes ports, mode and allow-local together: every field is
// validated first, so a bad one changes nothing, then they are applied as one
// change with one audit record (none when nothing differs).
func (e *Engine) SetSettings(ctx context.Context, actor Actor, s Settings) (Result, error) {
	var parts []string
	var ports []uint16
	var mode policy.Mode
	var local bool
	if s.Ports != nil {
		var err error
		if ports, err = policy.ParsePorts(*s.Ports); err != nil {
			return Result{}, invalid(fmt.Errorf("ports: %w", err))
		}
		parts = append(parts, "ports "+policy.PortsString(ports))
	}
	if s.Mode != nil {
		var err error
		if mode, err = policy.ParseMode(*s.Mode); err != nil {
			return Result{}, invalid(fmt.Errorf("mode: %w", err))
		}
		parts = append(parts, "mode "+string(mode))
	}
	if s.AllowLocal != nil {
		var err error
		if local, err = policy.ParseOnOff(*s.AllowLocal); err != nil {
			return Result{}, invalid(fmt.Errorf("allow-local: %w", err))
		}
		parts = append(parts, "allow-local "+onOff(local))
	}
	var rate policy.Rate
	if s.RateLimit != nil {
		var err error
		if rate, err = policy.ParseRate(*s.RateLimit); err != nil {
			return Result{}, invalid(fmt.Errorf("rate-limit: %w", err))
		}
		parts = append(parts, "rate-limit "+rate.String())
	}
	detail := strings.Join(parts, " ")
	return e.change(ctx, actor, "set", detail, func(p *policy.Policy, _ *policy.Directory) (string, error) {
		var changed []string
		if s.Ports != nil && policy.PortsString(ports) != policy.PortsString(p.Ports) {
			p.Ports = ports
			changed = append(changed, "restricted ports set to "+policy.PortsString(ports))
		}
		if s.Mode != nil && mode != p.Mode {
			p.Mode = mode
			changed = append(changed, "mode set to "+string(mode))
		}
		if s.AllowLocal != nil && local != p.AllowLocal {
			p.AllowLocal = local
			changed = append(changed, "allow-local set to "+onOff(local))
		}
		if s.RateLimit != nil && rate != p.RateLimit {
			p.RateLimit = rate
			changed = append(changed, "default rate limit set to "+rate.String())
		}
		if len(changed) == 0 {
			return "settings unchanged", nil
		}
		return strings.Join(changed, "; "), nil
	})
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
