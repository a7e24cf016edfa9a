package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

// Settings are the policy's settings to change at once, as the CLI would type
// them ("25,587", "log", "off"); nil fields keep their value.
type Settings struct {
	Ports, Mode, AllowLocal *string
	// RateLimit is the default rate limit ("100/h" or "off").
	RateLimit *string
	// HoldAfter ("10/m" or "off") and HoldFor ("1h", "0" for until
	// released) are the automatic hold's settings. They live in their own
	// table but change in the same transaction, under the same audit
	// record, so a save is all or nothing.
	HoldAfter, HoldFor *string
}

// SetSettings changes ports, mode, allow-local, the default rate limit and
// the hold settings together: every field is
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
	var holdAfter policy.Rate
	if s.HoldAfter != nil {
		var err error
		if holdAfter, err = parseHoldAfter(*s.HoldAfter); err != nil {
			return Result{}, err
		}
		parts = append(parts, "hold-after "+holdAfter.String())
	}
	var holdFor time.Duration
	if s.HoldFor != nil {
		var err error
		if holdFor, err = ParseHoldDuration(*s.HoldFor); err != nil {
			return Result{}, invalid(fmt.Errorf("hold-for: %w", err))
		}
		parts = append(parts, "hold-for "+durationText(holdFor))
	}
	detail := strings.Join(parts, " ")
	var holdMsgs []string
	opts := changeOptions{}
	if s.HoldAfter != nil || s.HoldFor != nil {
		opts.also = func(ctx context.Context, tx *store.Tx) (bool, error) {
			was, err := tx.HoldSettings(ctx)
			if err != nil {
				return false, err
			}
			hs := was
			if s.HoldAfter != nil && holdAfter != hs.After {
				hs.After = holdAfter
				holdMsgs = append(holdMsgs, holdAfterText(holdAfter))
			}
			if s.HoldFor != nil && holdFor != hs.For {
				hs.For = holdFor
				holdMsgs = append(holdMsgs, holdForText(holdFor))
			}
			if hs == was {
				return false, nil
			}
			return true, tx.PutHoldSettings(ctx, hs)
		}
	}
	res, err := e.changeWith(ctx, actor, "set", detail, opts, func(p *policy.Policy, _ *policy.Directory) (string, error) {
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
		return strings.Join(changed, "; "), nil
	})
	if err != nil {
		return Result{}, err
	}
	// The hold settings' part runs after edit, so the message is joined
	// here.
	var msgs []string
	if res.Message != "" {
		msgs = append(msgs, res.Message)
	}
	msgs = append(msgs, holdMsgs...)
	if len(msgs) == 0 {
		res.Message = "settings unchanged"
	} else {
		res.Message = strings.Join(msgs, "; ")
	}
	return res, nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// HoldForValue is d as set hold-for takes it back: "1h", "90m", "1d", "0".
func HoldForValue(d time.Duration) string { return durationText(d) }
