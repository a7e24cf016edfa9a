// Package bpf is the eBPF cgroup enforcement backend: two programs,
// sg_connect4 and sg_connect6, attached with bpf_link to one cgroup2 cgroup
// (by default the cgroup2 root), decide every TCP connect() of its processes
// to a restricted port from pinned maps: allowed uids, restricted ports,
// exceptions (uid × prefix × port, one LPM trie per family), local addresses
// and a config word (mode, allow-local); allowed uids' connections are held
// to per-uid rate limits (ratelimit.go) and counted. Blocked (or logged) attempts go to a
// ring buffer with the process that made them; a per-CPU counter counts the
// events the ring had no room for.
//
// Programs, links and maps are pinned under BPFFS/smtpguard/, so enforcement
// outlives the process that applied it. Apply changes map elements only (a
// policy change never reloads a program) and repairs missing or detached
// links; Remove detaches and unpins everything.
//
// Differences from the nft backend, by design of the hook: the uid matched is
// the real uid of the task calling connect() (not the socket's owner), so a
// setuid drop after socket() and a socket passed over a Unix socket are
// refused; processes in their own network namespace (containers) are seen as
// long as they are in the cgroup. What it cannot stop is in Limitations.
package bpf

import (
	"log/slog"
	"net/netip"
	"strings"

	"github.com/smtpguard/smtpguard/internal/enforce"
)

// Name is the backend's CLI name.
const Name = "bpf"

// DefaultBPFFS is where a bpf filesystem is normally mounted.
const DefaultBPFFS = "/sys/fs/bpf"

// PinDirName is the directory under the bpf filesystem holding every pin.
const PinDirName = "smtpguard"

// Config is everything the backend needs to know about the host.
type Config struct {
	// Logger receives debug detail (verifier logs) and warnings. Required.
	Logger *slog.Logger
	// CgroupPath is the cgroup2 directory the programs attach to; they apply
	// to its processes and all its descendants. Empty means the cgroup2
	// root, found in /proc/self/mountinfo (unified or hybrid hierarchy).
	CgroupPath string
	// BPFFS is a mounted bpf filesystem; pins go in BPFFS/smtpguard/.
	// Empty means DefaultBPFFS.
	BPFFS string
	// MountBPFFS lets Apply mount a bpf filesystem at BPFFS when none is
	// there (never on top of another file system's files).
	MountBPFFS bool
	// LocalAddrs lists this host's addresses for allow-local (loopback and
	// the unspecified addresses are added regardless). Nil lists the
	// addresses of the interfaces in the caller's network namespace.
	LocalAddrs func() ([]netip.Prefix, error)
	// RingSize is the event ring buffer's size in bytes: a power of two and
	// a multiple of the page size. Zero means DefaultRingSize (1 MiB). A
	// pinned ring of another size is replaced only by Remove and Apply.
	RingSize uint32
}

// Facts is what the backend says about itself, for status and the
// backend-neutral Describe() at the seam.
type Facts struct {
	// Covers lists what the backend sees.
	Covers []string
	// CannotStop lists the ways around it that remain.
	CannotStop []string
	// Refusal is how a refused connect() looks to the program making it.
	Refusal string
	// RefusalErrno is the errno a refused connect() fails with:
	// "ECONNREFUSED" where the kernel has bpf_set_retval for cgroup/connect
	// programs, else "EPERM".
	RefusalErrno string
	// ChangeNotifications is false: nothing tells us when someone changes
	// our maps or detaches our links, so the daemon must Verify periodically
	// (Watch returns an error wrapping enforce.ErrNotSupported).
	ChangeNotifications bool
	// EventFields lists the enforce.Event and Process fields events fill.
	EventFields []string
}

// Covers is what the programs see, whatever the kernel.
var Covers = []string{
	"TCP and MPTCP connect() over IPv4, IPv6 and IPv4-mapped IPv6 from every process of the cgroup and its descendants",
	"sendto(MSG_FASTOPEN), io_uring and non-blocking connects (the same kernel hook)",
	"processes in their own network or user namespace (containers) inside the cgroup, by their host uid",
	"a setuid drop after socket() and sockets passed over Unix sockets: the uid is the real uid of the task calling connect()",
}

// Limitations are the ways around this backend that remain.
var Limitations = []string{
	"a process that only changes its effective uid (seteuid) keeps a real uid of root or an allowed user and passes",
	"io_uring rings with SQPOLL created by root or an allowed user connect from the ring's kernel thread, with its creator's uid",
	"io_uring requests submitted under a personality root or an allowed user registered (IORING_REGISTER_PERSONALITY) run with that uid and pass",
	"a socket created outside the cgroup (the cgroup is bound at socket() time) and passed into it is not seen",
	"with allow-local, an IPv6 socket with a routing header (IPV6_RTHDR) to a local first address is let through: the hook sees only the connect() address",
	"the kernel cannot tell us when our maps or links change: drift is found by periodic verification",
}

// Refusal messages, by errno.
const (
	RefusalConnRefused = "connect() fails at once with ECONNREFUSED (bpf_set_retval)"
	RefusalEPERM       = "connect() fails at once with EPERM (this kernel lacks bpf_set_retval for cgroup/connect programs)"
)

// Process is what the programs know of the task behind an event, beyond
// enforce.Event's fields. The daemon can enrich it from /proc/TGID.
type Process struct {
	// The calling thread's PID, process's TGID and thread name (Comm, at
	// most 15 bytes) are in enforce.Event.
	GID uint32 // the calling task's real gid
	// NetnsCookie identifies the network namespace of the socket (the same
	// value as SO_NETNS_COOKIE): nonzero and distinct for containers.
	NetnsCookie uint64
	// SocketCookie identifies the socket (SO_COOKIE).
	SocketCookie uint64
	// Mapped: the destination was IPv4-mapped IPv6 on an AF_INET6 socket;
	// Event.Dst holds the IPv4 address and Family is 4.
	Mapped bool
}

// Event is one attempt with the process behind it. Lost is set (and
// Event.Action is enforce.ActionLost) when the ring buffer was full: that many
// events are missing.
type Event struct {
	enforce.Event
	Process
	Lost uint64
}

// Describe is part of enforce.Backend: Facts in the seam's terms.
func (b *Backend) Describe() enforce.Description {
	f := b.Facts()
	return enforce.Description{
		Covers:              strings.Join(f.Covers, "; "),
		Limitations:         f.CannotStop,
		Refusal:             f.Refusal,
		ChangeNotifications: f.ChangeNotifications,
		AttachesToCgroup:    true,
	}
}
