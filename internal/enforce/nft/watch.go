//go:build linux

package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/enforce/nflog"
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
	if err := nflog.SetReceiveBuffer(c, monitorSocketBuffer); err != nil {
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
