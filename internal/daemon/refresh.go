package daemon

import (
	"context"
	"errors"

	"github.com/smtpguard/smtpguard/internal/enforce"
)

// localRefresher is a backend that keeps a list of this host's addresses in
// the kernel (bpf's allow-local maps) and can rewrite just that list.
type localRefresher interface {
	RefreshLocal(ctx context.Context) error
}

// errNoRefresh: the held backend keeps no address list.
var errNoRefresh = errors.New("backend keeps no list of local addresses")

// RefreshLocal forwards to the held backend when it keeps a list of this
// host's addresses, under the same lock as Apply.
func (h *heldBackend) RefreshLocal(ctx context.Context) error {
	r, ok := h.Backend.(localRefresher)
	if !ok {
		return errNoRefresh
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return r.RefreshLocal(ctx)
}

// CgroupPath forwards to a cgroup backend (bpf), so an enable through the
// daemon (web, API) stores the cgroup it attaches to.
func (h *heldBackend) CgroupPath() (string, error) {
	c, ok := h.Backend.(interface{ CgroupPath() (string, error) })
	if !ok {
		return "", errors.New("backend does not attach to a cgroup")
	}
	return c.CgroupPath()
}

// addrLoop refreshes the local address lists as soon as an address of
// this network namespace is added or removed (netlink), so allow-local
// follows the host's addresses at once instead of at the next periodic
// verify, which stays the backstop. A burst of changes (an interface
// coming up with several addresses) costs one refresh per netlink read.
func (d *Daemon) addrLoop(ctx context.Context) {
	err := addrEvents(ctx, func() { d.refreshLocal(ctx) })
	if err != nil && !errors.Is(err, enforce.ErrNotSupported) {
		d.log.Warn("cannot follow address changes; this host's addresses are refreshed at each periodic verify instead", "err", err)
	}
}

// refreshLocal rewrites the local address lists of the backends that keep
// one, before each periodic verify: an address added or removed since is
// then not reported and repaired as drift. Backends with nothing installed
// do nothing.
func (d *Daemon) refreshLocal(ctx context.Context) {
	for _, b := range d.eng.Backends() {
		r, ok := b.(localRefresher)
		if !ok {
			continue
		}
		if err := r.RefreshLocal(ctx); err != nil && !errors.Is(err, errNoRefresh) && !errors.Is(err, enforce.ErrNotSupported) {
			d.log.Debug("refresh this host's addresses", "backend", b.Name(), "err", err)
		}
	}
}
