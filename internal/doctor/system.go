package doctor

import (
	"context"
	"net"
	"net/netip"
	"os"
)

// System is what doctor probes. Zero fields are the real system; tests set
// them.
type System struct {
	// Dial opens the TCP connections of the upstream and local SMTP checks.
	Dial DialFunc
	// LookupHost resolves --to's host name.
	LookupHost func(ctx context.Context, host string) ([]netip.Addr, error)
	// LocalAddrs are this host's own addresses, which allow-local lets
	// through.
	LocalAddrs func() ([]netip.Addr, error)
	// Euid is the effective uid doctor runs as: the upstream check means
	// something only as root, whom smtpguard never restricts.
	Euid func() int
	// LocalSMTP is where scripts hand mail to the MTA (127.0.0.1:25).
	LocalSMTP string
	// ProcRoot is where the MTA's processes are looked for (/proc).
	ProcRoot string
}

// WithDefaults fills the zero fields with the real system.
func (s System) WithDefaults() System {
	if s.Dial == nil {
		var d net.Dialer
		s.Dial = d.DialContext
	}
	if s.LookupHost == nil {
		s.LookupHost = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if s.LocalAddrs == nil {
		s.LocalAddrs = interfaceAddrs
	}
	if s.Euid == nil {
		s.Euid = os.Geteuid
	}
	if s.LocalSMTP == "" {
		s.LocalSMTP = "127.0.0.1:25"
	}
	if s.ProcRoot == "" {
		s.ProcRoot = "/proc"
	}
	return s
}

func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out, nil
}
