//go:build linux

package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// addrEvents calls changed after every batch of RTM_NEWADDR / RTM_DELADDR
// messages of the caller's network namespace until ctx ends, reading a
// NETLINK_ROUTE socket subscribed to the IPv4 and IPv6 address groups.
func addrEvents(ctx context.Context, changed func()) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open a NETLINK_ROUTE socket for address changes: %w", err)
	}
	sa := &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return fmt.Errorf("subscribe to address changes (NETLINK_ROUTE): %w", err)
	}
	// Through the runtime's poller, so that closing the file ends a read.
	f := os.NewFile(uintptr(fd), "rtnetlink")
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer func() {
		if stop() {
			f.Close()
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, unix.ENOBUFS) {
			changed() // messages were lost: refresh anyway
			continue
		}
		if err != nil {
			return fmt.Errorf("read address changes (NETLINK_ROUTE): %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			continue
		}
		for _, m := range msgs {
			if m.Header.Type == unix.RTM_NEWADDR || m.Header.Type == unix.RTM_DELADDR {
				changed()
				break
			}
		}
	}
}
