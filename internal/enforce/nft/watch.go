//go:build linux

package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/florianl/go-nflog/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// Watch is part of enforce.Backend. It subscribes to nf_tables change
// notifications; "nft flush ruleset" or a firewall manager reloading produce
// them at once. Only notifications about our table call changed: fail2ban
// adding and deleting set elements in its own table several times a second
// must not make the daemon read 10,000 uids back each time. A table of 10,000
// uids written back produces 10,000 notifications: an overrun of the socket
// (ENOBUFS) is taken as a change, since what it lost may have been ours, and
// reading goes on, never a reason to stop watching.
func (b *Backend) Watch(ctx context.Context, changed func()) error {
	return b.watch(ctx, changed, func() {})
}

// watch is Watch, calling subscribed once notifications are being received.
func (b *Backend) watch(ctx context.Context, changed, subscribed func()) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: b.netnsFD})
	if err != nil {
		return classify(fmt.Errorf("subscribe to nftables changes: %w", err))
	}
	defer c.Close()
	if err := c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		return classify(fmt.Errorf("subscribe to nftables changes: %w", err))
	}
	if err := setSocketBuffer(c, monitorSocketBuffer); err != nil {
		b.logger.Debug("could not enlarge the nftables monitor socket buffer", "err", err)
	}
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()
	subscribed()
	for {
		msgs, err := c.Receive()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			if !slices.ContainsFunc(msgs, concernsOurTable) {
				continue
			}
		case errors.Is(err, unix.ENOBUFS):
			b.logger.Debug("nftables monitor overrun; verifying", "err", err)
		default:
			return fmt.Errorf("nftables change notifications: %w", err)
		}
		changed()
	}
}

// concernsOurTable reports whether an nf_tables notification may be about
// table inet smtpguard. Every object message (table, chain, rule, set,
// element, object, flowtable) names its table in attribute 1 (NFTA_TABLE_NAME,
// NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, ...), after the 4-byte nfgenmsg header;
// the NEWGEN message that closes every transaction names none and is
// skipped. Anything not understood counts as ours: a spurious verify is
// cheap, a missed repair is not.
func concernsOurTable(m netlink.Message) bool {
	const nftMsgNewGen = 15
	if m.Header.Type>>8 != unix.NFNL_SUBSYS_NFTABLES {
		return true
	}
	if m.Header.Type&0xff == nftMsgNewGen {
		return false
	}
	if len(m.Data) < 4 {
		return true
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return true
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == 1 {
			return ad.String() == tableName
		}
	}
	return true
}

// monitorSocketBuffer is the receive buffer of the change monitor: enough for
// the notifications of one table replace with thousands of elements.
const monitorSocketBuffer = 8 << 20

// setSocketBuffer sets a netlink socket's receive buffer, beyond rmem_max when
// we have CAP_NET_ADMIN (SO_RCVBUFFORCE), else as far as rmem_max allows.
func setSocketBuffer(c *netlink.Conn, size int) error {
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

// Events is part of enforce.Backend. It reads the block rule's netlink log
// group; the kernel attaches the socket's uid to each packet.
func (b *Backend) Events(ctx context.Context, sink func(enforce.Event)) error {
	return b.events(ctx, policy.DefaultLogGroup, sink)
}

func (b *Backend) events(ctx context.Context, group uint16, sink func(enforce.Event)) error {
	nf, err := nflog.Open(&nflog.Config{
		NetNS:    b.netnsFD,
		Group:    group,
		Copymode: nflog.CopyPacket,
		Bufsize:  128, // IPv6 header + TCP ports is all we read
		// Batches of up to 64 packets, or whatever came within 0.1 s:
		// fewer, fuller messages under a flood, and attribution still shows
		// up well within a second.
		QThresh: 64,
		Timeout: 10,
	})
	if err != nil {
		return classify(fmt.Errorf("open netlink log group %d: %w", group, err))
	}
	defer nf.Close()
	// The kernel drops log messages when our socket buffer is full. A large
	// buffer (kernel memory, only used under a flood) absorbs bursts of
	// tens of thousands of attempts while the reader catches up; the
	// default (rmem_default, ~200 KiB) holds a few hundred.
	if err := setSocketBuffer(nf.Con, eventSocketBuffer); err != nil {
		b.logger.Debug("could not enlarge the netlink log socket buffer", "err", err)
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
		b.logger.Debug("netlink log read error", "err", err)
		return 0
	}
	if err := nf.RegisterWithErrorFunc(ctx, hook, errfn); err != nil {
		return fmt.Errorf("listen on netlink log group %d: %w", group, err)
	}
	<-ctx.Done()
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
