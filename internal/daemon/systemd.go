package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// ServiceNotifier speaks systemd's notify protocol for a Type=notify unit:
// READY=1 once the daemon has converged the kernel to the stored policy and
// serves, and WATCHDOG=1 from the reconcile loop, so that a loop that hangs
// stops the pings and systemd restarts the daemon after WatchdogSec=.
// A nil *ServiceNotifier (not run by systemd) does nothing.
type ServiceNotifier struct {
	log      *slog.Logger
	watchdog time.Duration // WatchdogSec= as systemd passed it; 0 without one
}

// NewServiceNotifier returns the notifier for this process, or nil when
// systemd did not ask for notifications (no NOTIFY_SOCKET).
func NewServiceNotifier(log *slog.Logger) (*ServiceNotifier, error) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return nil, nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	wd, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		return nil, fmt.Errorf("systemd watchdog settings (WATCHDOG_USEC, WATCHDOG_PID): %w", err)
	}
	return &ServiceNotifier{log: log.With("component", "systemd"), watchdog: wd}, nil
}

// heartbeat is what the reconcile loop waits on besides its work: a channel
// that ticks at a third of the watchdog timeout, or nil (never ready) when
// there is no watchdog to feed.
func (s *ServiceNotifier) heartbeat() (tick <-chan time.Time, stop func()) {
	if s == nil || s.watchdog <= 0 {
		return nil, func() {}
	}
	t := time.NewTicker(s.watchdog / 3)
	return t.C, t.Stop
}

// ready tells systemd the daemon is up; status is shown by systemctl status.
func (s *ServiceNotifier) ready(convergeErr error) {
	if s == nil {
		return
	}
	status := "STATUS=kernel rules converged to the stored policy"
	if convergeErr != nil {
		status = "STATUS=cannot converge the kernel rules yet, retrying: " + convergeErr.Error()
	}
	s.send(sd.SdNotifyReady + "\n" + status)
	s.alive()
}

// alive feeds the watchdog; only the reconcile loop calls it.
func (s *ServiceNotifier) alive() {
	if s == nil || s.watchdog <= 0 {
		return
	}
	s.send(sd.SdNotifyWatchdog)
}

func (s *ServiceNotifier) send(state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		s.log.Warn("cannot notify systemd", "state", state, "err", err)
	}
}

// notifyReady tells systemd the daemon serves, with the outcome of the
// first converge (the last reconcile error, if any) as its status.
func (d *Daemon) notifyReady() {
	d.mu.Lock()
	err := d.lastErr
	d.mu.Unlock()
	d.cfg.Service.ready(err)
}
