package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/store"
)

// MTA returns the manager of this host's MTA. opts names the configuration to
// manage (--exim-config, --postfix-config-dir); detection uses the engine's
// root. The error wraps mta.ErrUnsupported when there is no MTA whose limits
// smtpguard can manage; the manager still reports what was found.
func (e *Engine) MTA(ctx context.Context, opts mta.Options) (mta.Manager, error) {
	dir, err := e.Directory()
	if err != nil {
		return nil, err
	}
	if opts.Root == "" {
		opts.Root = e.cfg.MTA.Root
	}
	return mta.NewManager(ctx, opts, dir)
}

// SetMTALimits changes the MTA's limits on simultaneous incoming SMTP
// connections, under the state lock, and records it in the audit log. The
// manager validates the new configuration with the MTA itself and restores
// the old one on any failure.
func (e *Engine) SetMTALimits(ctx context.Context, actor Actor, m mta.Manager, l mta.Limits) (Result, error) {
	if err := l.Validate(); err != nil {
		return Result{}, invalid(err)
	}
	unlock, err := lockFile(ctx, filepath.Join(e.cfg.StateDir, "lock"))
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	detail := fmt.Sprintf("%s max-connections %d per-host %d reserve %d", m.Name(), l.MaxConnections, l.MaxPerHost, l.Reserve)
	rec := store.AuditRecord{At: e.cfg.Now(), Actor: actor.Name, Source: actor.Source, Remote: actor.Remote,
		Operation: "mta set", Detail: detail, After: limitsJSON(l), Outcome: "ok"}
	before, err := m.SetLimits(ctx, l)
	rec.Before = limitsJSON(before)
	if err != nil {
		rec.After, rec.Outcome = rec.Before, "failed: "+err.Error()
		if aerr := e.store.AppendAudit(ctx, rec); aerr != nil {
			e.log.Error("cannot record failed change in the audit log", "err", aerr)
		}
		return Result{}, fmt.Errorf("set %s connection limits: %w", m.Name(), err)
	}
	if err := e.store.AppendAudit(ctx, rec); err != nil {
		return Result{}, fmt.Errorf("limits changed but the audit record failed: %w", err)
	}
	e.log.Info("MTA limits changed", "mta", m.Name(), "detail", detail, "actor", actor.Name)
	msg := fmt.Sprintf("%s now accepts at most %d simultaneous incoming SMTP connections", m.Name(), l.MaxConnections)
	if l.MaxPerHost > 0 {
		msg += fmt.Sprintf(", %d per host", l.MaxPerHost)
	}
	if l.Reserve > 0 {
		msg += fmt.Sprintf(", %d reserved", l.Reserve)
	}
	return Result{Changed: before != l, Message: msg}, nil
}

func limitsJSON(l mta.Limits) string {
	b, _ := json.Marshal(l)
	return string(b)
}
