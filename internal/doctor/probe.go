package doctor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DialFunc opens a TCP connection; (*net.Dialer).DialContext is one.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// failure classifies why a connect failed, in terms of what to do about it.
type failure int

const (
	failOther       failure = iota
	failTimeout             // no answer at all: a drop on the way
	failRefused             // a reset at once: nothing listens, or a reset on the way
	failUnreachable         // no route, or an ICMP unreachable
	failDenied              // this host's own firewall (EPERM, EACCES)
)

// classify sorts a dial error.
func classify(err error) failure {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return failTimeout
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return failRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return failUnreachable
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return failDenied
	}
	return failOther
}

// errnoText is the kernel's words for err, without Go's wrapping.
func errnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	if classify(err) == failTimeout {
		return "timed out"
	}
	return err.Error()
}

// UpstreamFix is what to do when the network between this server and the
// world blocks port: for 25, what hosting administrators have to do.
func UpstreamFix(port uint16) string {
	if port == 25 {
		return "your provider blocks outbound port 25: ask them to unblock it, or relay through a smarthost on 587/2525"
	}
	return fmt.Sprintf("the network upstream blocks outbound port %d: ask your provider to unblock it, or relay through a smarthost on another port", port)
}

// Upstream is the bounded connect as root to host on port: can this server
// reach it at all? smtpguard never restricts root, so whatever stops this
// connection is not smtpguard. addrs are host's addresses; the first that
// connects passes. All are tried at once, each bounded by timeout.
func Upstream(ctx context.Context, dial DialFunc, host string, addrs []netip.Addr, port uint16, timeout time.Duration) Check {
	if len(addrs) == 0 {
		return Check{Detail: fmt.Sprintf("%s has no address to connect to", host),
			Fix: "check the host name, and this server's resolver (/etc/resolv.conf)"}
	}
	type result struct {
		elapsed time.Duration
		err     error
	}
	results := make([]chan result, len(addrs))
	for i, a := range addrs {
		results[i] = make(chan result, 1)
		go func() {
			dctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			start := time.Now()
			c, err := dial(dctx, "tcp", net.JoinHostPort(a.String(), strconv.Itoa(int(port))))
			if err == nil {
				c.Close()
			}
			results[i] <- result{time.Since(start), err}
		}()
	}
	all := make([]result, len(addrs))
	for i := range addrs {
		all[i] = <-results[i]
		if all[i].err == nil {
			return Check{OK: true, Detail: fmt.Sprintf("root connects to %s port %d%s in %v: the network lets this server reach it",
				addrs[i], port, namedAs(host, addrs[i]), all[i].elapsed.Round(time.Millisecond))}
		}
	}
	// None connected: the first address tells.
	a, err := addrs[0], all[0].err
	where := fmt.Sprintf("%s port %d%s", a, port, namedAs(host, a))
	if len(addrs) > 1 {
		where += fmt.Sprintf(" (and its %d other addresses)", len(addrs)-1)
	}
	const notUs = "not smtpguard, which never restricts root"
	switch classify(err) {
	case failTimeout:
		return Check{Detail: fmt.Sprintf("root's connection to %s got no answer within %v: the network upstream drops it (%s)", where, timeout, notUs),
			Fix: UpstreamFix(port)}
	case failRefused:
		return Check{Detail: fmt.Sprintf("root's connection to %s was refused at once (%s): nothing listens there, or the network upstream resets it (%s)", where, errnoText(err), notUs),
			Fix: fmt.Sprintf("make sure %s accepts connections on port %d; if it does, %s", host, port, UpstreamFix(port))}
	case failUnreachable:
		return Check{Detail: fmt.Sprintf("root cannot reach %s: %s", where, errnoText(err)),
			Fix: fmt.Sprintf("check this server's network and routes to %s ('ip route get %s')", a, a)}
	case failDenied:
		return Check{Detail: fmt.Sprintf("this server refuses root's own connection to %s (%s): a firewall rule on this host, %s", where, errnoText(err), notUs),
			Fix: fmt.Sprintf("find the rule that blocks outgoing port %d for root ('nft list ruleset', 'iptables-save'; see the conflicts check) and remove it", port)}
	}
	return Check{Detail: fmt.Sprintf("root cannot connect to %s: %v", where, err),
		Fix: fmt.Sprintf("check this server's network connection to %s", host)}
}

// namedAs is " (host)" when host is a name rather than the address itself.
func namedAs(host string, a netip.Addr) string {
	if h, err := netip.ParseAddr(host); err == nil && h.Unmap() == a.Unmap() {
		return ""
	}
	return " (" + host + ")"
}

// LocalSMTP is the bounded check that an MTA greets on addr (127.0.0.1:25),
// where scripts hand it their mail. startFix is the command that starts the
// MTA.
func LocalSMTP(ctx context.Context, dial DialFunc, addr, startFix string, timeout time.Duration) Check {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		switch classify(err) {
		case failRefused:
			return Check{Detail: fmt.Sprintf("nothing accepts connections on %s (%s): scripts cannot hand their mail to the MTA", addr, errnoText(err)),
				Fix: startFix + ", and make sure it listens on " + addr}
		case failTimeout:
			return Check{Detail: fmt.Sprintf("connecting to %s got no answer within %v", addr, timeout),
				Fix: "a firewall rule on this host drops local connections to port 25: remove it"}
		}
		return Check{Detail: fmt.Sprintf("cannot connect to %s: %v", addr, err), Fix: startFix + ", and make sure it listens on " + addr}
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetReadDeadline(dl)
	}
	// One line bounds what is read: a greeting, or whatever answers there.
	line, err := bufio.NewReaderSize(c, 512).ReadString('\n')
	line = strings.TrimSpace(line)
	switch {
	case err != nil && line == "":
		return Check{Detail: fmt.Sprintf("%s accepts connections but sends no greeting (%s)", addr, errnoText(err)),
			Fix: "the MTA is overloaded or hung: see its log, and restart it"}
	case strings.HasPrefix(line, "220"):
		return Check{OK: true, Detail: fmt.Sprintf("%s greets: %s", addr, clip(line))}
	}
	return Check{Detail: fmt.Sprintf("%s answers %q instead of a 220 greeting: it refuses local clients", addr, clip(line)),
		Fix: "see the MTA's log for why it refuses connections from this host (a connection limit, an ACL)"}
}

// clip bounds a line another program sent before it is shown.
func clip(s string) string {
	const max = 120
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
