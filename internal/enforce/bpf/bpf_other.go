//go:build !linux

package bpf

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// Backend is unavailable outside Linux: every method fails with
// enforce.ErrNotSupported.
type Backend struct{ cfg Config }

var _ enforce.Backend = (*Backend)(nil)

// New returns the stub.
func New(cfg Config) *Backend { return &Backend{cfg: cfg} }

var errNotLinux = fmt.Errorf("the bpf backend needs Linux: %w", enforce.ErrNotSupported)

// Name is part of enforce.Backend.
func (b *Backend) Name() string { return Name }

// Facts describes the backend.
func (b *Backend) Facts() Facts {
	return Facts{Covers: Covers, CannotStop: Limitations, Refusal: RefusalEPERM, RefusalErrno: "EPERM"}
}

// Probe is part of enforce.Backend.
func (b *Backend) Probe(ctx context.Context) error { return errNotLinux }

// Apply is part of enforce.Backend.
func (b *Backend) Apply(ctx context.Context, rs policy.Ruleset) error { return errNotLinux }

// Remove is part of enforce.Backend.
func (b *Backend) Remove(ctx context.Context) error { return errNotLinux }

// Present is part of enforce.Backend.
func (b *Backend) Present(ctx context.Context) (bool, error) { return false, errNotLinux }

// Verify is part of enforce.Backend.
func (b *Backend) Verify(ctx context.Context, rs policy.Ruleset) (enforce.Drift, error) {
	return enforce.Drift{}, errNotLinux
}

// Render is part of enforce.Backend.
func (b *Backend) Render(rs policy.Ruleset) string { return "bpf: needs Linux\n" }

// Watch is part of enforce.Backend.
func (b *Backend) Watch(ctx context.Context, changed func()) error { return errNotLinux }

// Events is part of enforce.Backend.
func (b *Backend) Events(ctx context.Context, sink func(enforce.Event)) error { return errNotLinux }

// EventsDetailed is Events with the process behind each attempt.
func (b *Backend) EventsDetailed(ctx context.Context, sink func(Event)) error { return errNotLinux }

// RefreshLocal rewrites the local address maps.
func (b *Backend) RefreshLocal(ctx context.Context) error { return errNotLinux }

// Cgroup2Mount is where the cgroup2 hierarchy is mounted.
func Cgroup2Mount() (string, error) { return "", errNotLinux }

// PinDir is where every pin would live.
func (b *Backend) PinDir() string { return b.cfg.BPFFS + "/" + PinDirName }

// CgroupPath is the cgroup the programs would attach to.
func (b *Backend) CgroupPath() (string, error) { return "", errNotLinux }

// DroppedEvents is how many events the ring buffer had no room for.
func (b *Backend) DroppedEvents() (uint64, error) { return 0, errNotLinux }

// InterfaceAddrs lists this host's addresses.
func InterfaceAddrs() ([]netip.Prefix, error) { return nil, errNotLinux }

// AllowedConnections counts allowed connections per uid.
func (b *Backend) AllowedConnections(ctx context.Context) (map[uint32]uint64, error) {
	return nil, errNotLinux
}
