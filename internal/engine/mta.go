package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/store"
)

// MTAReader reads an MTA and its limits. It is what MTA hands out: limits
// change only through SetMTALimits, under the state lock and with an audit
// record.
type MTAReader interface {
	Name() string
	Info(ctx context.Context) (mta.Info, error)
}

// manager builds the manager of this host's MTA; opts.Root defaults to the
// engine's.
func (e *Engine) manager(ctx context.Context, opts mta.Options) (mta.Manager, error) {
	dir, err := e.Directory()
	if err != nil {
		return nil, err
	}
	if opts.Root == "" {
		opts.Root = e.cfg.MTA.Root
	}
	return e.cfg.NewMTAManager(ctx, opts, dir)
}

// MTA returns a reader of this host's MTA. opts names the configuration
// (--exim-config, --postfix-config-dir); detection uses the engine's root.
// The error wraps mta.ErrUnsupported when there is no MTA whose limits
// smtpguard can manage; the reader still reports what was found.
func (e *Engine) MTA(ctx context.Context, opts mta.Options) (MTAReader, error) {
	m, err := e.manager(ctx, opts)
	if m == nil {
		return nil, err
	}
	return mtaReader{m}, err
}

// mtaReader hides the manager's SetLimits, also from a type assertion.
type mtaReader struct{ m mta.Manager }

func (r mtaReader) Name() string                               { return r.m.Name() }
func (r mtaReader) Info(ctx context.Context) (mta.Info, error) { return r.m.Info(ctx) }

// MTAChange is a change of the MTA's connection limits; nil fields keep the
// value the MTA reports.
type MTAChange struct {
	MaxConnections, MaxPerHost, Reserve *int
}

// SetMTALimits changes the MTA's limits on simultaneous incoming SMTP
// connections, under the state lock, and records it in the audit log. The
// current limits are read under the lock, so a concurrent change is not
// undone by a stale read. The manager validates the new configuration with
// the MTA itself and restores the old one on any failure. It returns the
// limits asked for.
func (e *Engine) SetMTALimits(ctx context.Context, actor Actor, opts mta.Options, ch MTAChange) (Result, mta.Limits, error) {
	unlock, err := lockFile(ctx, filepath.Join(e.cfg.StateDir, "lock"))
	if err != nil {
		return Result{}, mta.Limits{}, err
	}
	defer unlock()
	m, err := e.manager(ctx, opts)
	if err != nil {
		return Result{}, mta.Limits{}, err
	}
	info, err := m.Info(ctx)
	if err != nil {
		return Result{}, mta.Limits{}, fmt.Errorf("read current %s limits: %w", m.Name(), err)
	}
	l := info.Limits
	for _, f := range []struct {
		v   *int
		dst *int
	}{{ch.MaxConnections, &l.MaxConnections}, {ch.MaxPerHost, &l.MaxPerHost}, {ch.Reserve, &l.Reserve}} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	if err := l.Validate(); err != nil {
		return Result{}, l, invalid(err)
	}
	detail := fmt.Sprintf("%s max-connections %d per-host %d reserve %d", m.Name(), l.MaxConnections, l.MaxPerHost, l.Reserve)
	msg := fmt.Sprintf("%s now accepts at most %d simultaneous incoming SMTP connections", m.Name(), l.MaxConnections)
	if l.MaxPerHost > 0 {
		msg += fmt.Sprintf(", %d per host", l.MaxPerHost)
	}
	if l.Reserve > 0 {
		msg += fmt.Sprintf(", %d reserved", l.Reserve)
	}
	if l == info.Limits {
		return Result{Message: msg + "; nothing changed"}, l, nil
	}
	rec := store.AuditRecord{At: e.cfg.Now(), Actor: actor.Name, Source: actor.Source, Remote: actor.Remote,
		Operation: "mta set", Detail: detail, After: limitsJSON(l), Outcome: "ok"}
	before, err := m.SetLimits(ctx, l)
	rec.Before = limitsJSON(before)
	if err != nil {
		rec.After, rec.Outcome = rec.Before, "failed: "+err.Error()
		if aerr := e.store.AppendAudit(ctx, rec); aerr != nil {
			e.log.Error("cannot record failed change in the audit log", "err", aerr)
		}
		return Result{}, l, fmt.Errorf("set %s connection limits: %w", m.Name(), err)
	}
	if err := e.store.AppendAudit(ctx, rec); err != nil {
		return Result{}, l, fmt.Errorf("limits changed but the audit record failed: %w", err)
	}
	e.log.Info("MTA limits changed", "mta", m.Name(), "detail", detail, "actor", actor.Name)
	return Result{Changed: before != l, Message: msg}, l, nil
}

func limitsJSON(l mta.Limits) string {
	b, _ := json.Marshal(l)
	return string(b)
}
