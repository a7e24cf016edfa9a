//go:build linux

package nflog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/florianl/go-nflog/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/enforce"
)

// Config says which log group to read, and where.
type Config struct {
	Group   uint16
	NetNSFD int // 0: the calling process's network namespace
	Logger  *slog.Logger
}

// Read delivers the attempts logged to cfg.Group to sink until ctx ends.
// Each log message's prefix ends in the action ("... blocked", "... logged",
// "... redirected"); the kernel attaches the socket's uid to each packet.
// Errors opening the group are returned unwrapped from the netlink library's
// errno, so the caller can classify them.
func Read(ctx context.Context, cfg Config, sink func(enforce.Event)) error {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	nf, err := nflog.Open(&nflog.Config{
		NetNS:    cfg.NetNSFD,
		Group:    cfg.Group,
		Copymode: nflog.CopyPacket,
		Bufsize:  128, // IPv6 header + TCP ports is all we read
		// Batches of up to 64 packets, or whatever came within 0.1 s:
		// fewer, fuller messages under a flood, and attribution still shows
		// up well within a second.
		QThresh: 64,
		Timeout: 10,
	})
	if err != nil {
		return fmt.Errorf("open netlink log group %d: %w", cfg.Group, err)
	}
	defer nf.Close()
	// The kernel drops log messages when our socket buffer is full. A large
	// buffer (kernel memory, only used under a flood) absorbs bursts of
	// tens of thousands of attempts while the reader catches up; the
	// default (rmem_default, ~200 KiB) holds a few hundred.
	if err := SetReceiveBuffer(nf.Con, eventSocketBuffer); err != nil {
		logger.Debug("could not enlarge the netlink log socket buffer", "err", err)
	}
	hook := func(a nflog.Attribute) int {
		if ev, ok := parseEvent(a); ok {
			sink(ev)
		}
		return 0
	}
	errfn := func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		if errors.Is(err, unix.ENOBUFS) {
			// The kernel never waits for us; when our socket buffer is full
			// it drops log messages and says so. Report it, keep reading.
			sink(enforce.Event{Time: time.Now(), Action: enforce.ActionLost})
			return 0
		}
		logger.Debug("netlink log read error", "err", err)
		return 0
	}
	if err := nf.RegisterWithErrorFunc(ctx, hook, errfn); err != nil {
		return fmt.Errorf("listen on netlink log group %d: %w", cfg.Group, err)
	}
	<-ctx.Done()
	return nil
}

// SetReceiveBuffer sets a netlink socket's receive buffer, beyond rmem_max
// when we have CAP_NET_ADMIN (SO_RCVBUFFORCE), else as far as rmem_max
// allows.
func SetReceiveBuffer(c *netlink.Conn, size int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
	}); err != nil {
		return err
	}
	if serr != nil {
		return c.SetReadBuffer(size)
	}
	return nil
}

// parseEvent extracts destination, port and owner from a logged SYN.
func parseEvent(a nflog.Attribute) (enforce.Event, bool) {
	if a.Payload == nil {
		return enforce.Event{}, false
	}
	ev := enforce.Event{Time: time.Now(), Action: enforce.ActionBlocked}
	if a.Timestamp != nil && !a.Timestamp.IsZero() {
		ev.Time = *a.Timestamp
	}
	if a.Prefix != nil {
		switch {
		case strings.HasSuffix(*a.Prefix, "logged"):
			ev.Action = enforce.ActionLogged
		case strings.HasSuffix(*a.Prefix, "redirected"):
			ev.Action = enforce.ActionRedirected
		case strings.HasSuffix(*a.Prefix, "explained"):
			ev.Action = enforce.ActionExplained
		case strings.HasSuffix(*a.Prefix, enforce.ActionRateLimited):
			ev.Action = enforce.ActionRateLimited
		}
	}
	if a.UID != nil {
		ev.UID, ev.HasUID = *a.UID, true
	}
	dst, port, family, ok := parseIPTCP(*a.Payload)
	if !ok {
		return enforce.Event{}, false
	}
	ev.Dst, ev.DstPort, ev.Family = dst, port, family
	return ev, true
}

// parseIPTCP reads the destination address and TCP port of an IPv4 or IPv6
// packet. IPv6 extension headers are not walked: a SYN from connect() has none.
func parseIPTCP(p []byte) (dst netip.Addr, port uint16, family int, ok bool) {
	if len(p) < 1 {
		return netip.Addr{}, 0, 0, false
	}
	switch p[0] >> 4 {
	case 4:
		ihl := int(p[0]&0x0f) * 4
		if len(p) < ihl+4 || ihl < 20 || p[9] != unix.IPPROTO_TCP {
			return netip.Addr{}, 0, 0, false
		}
		return netip.AddrFrom4([4]byte(p[16:20])), binary.BigEndian.Uint16(p[ihl+2:]), 4, true
	case 6:
		if len(p) < 44 || p[6] != unix.IPPROTO_TCP {
			return netip.Addr{}, 0, 0, false
		}
		return netip.AddrFrom16([16]byte(p[24:40])), binary.BigEndian.Uint16(p[42:]), 6, true
	}
	return netip.Addr{}, 0, 0, false
}

// eventSocketBuffer is the receive buffer of the netlink log socket.
const eventSocketBuffer = 16 << 20
