// Package explain is the SMTP responder of explain mode: the kernel hands
// it blocked connections to plain-text SMTP ports (nft redirects them, the
// bpf program rewrites their destination to loopback), and it answers each
// one with a single "554 5.7.1" greeting that names the user, the destination
// they tried, how to send instead and a reference the administrator can look
// up with "smtpguard events --ref". The script's own error log shows that
// line instead of a bare "connection refused".
//
// It follows RFC 5321 section 3.1 for a server that will not serve: the 554
// greeting, 503 to every command after it, 221 to QUIT, and it closes
// promptly (a short deadline for the whole session, a cap on commands and on
// line length). Connections beyond a fixed number at once are closed at once
// and counted, so a flood costs a bounded amount of memory and goroutines.
package explain

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smtpguard/smtpguard/internal/procinfo"
)

// Origin is who made a connection and where it was meant to go, as far as
// the kernel still tells while the connection is open.
type Origin struct {
	Dst    netip.AddrPort // the destination the client dialled
	UID    uint32
	HasUID bool
	PID    uint32        // the process holding the client socket; 0 if not found
	Proc   procinfo.Info // what /proc showed of PID
}

// Attempt is one explained connection, for the daemon's event record.
type Attempt struct {
	Time   time.Time
	Origin Origin
	User   string // "" when the uid has no account
	Ref    string
}

// Locator finds the origin of an accepted connection. An error means the
// destination is unknown (the connection did not come from smtpguard's
// rules); the responder still answers, without a destination.
type Locator func(ctx context.Context, c net.Conn) (Origin, error)

// Config configures a Server. Zero values take the defaults.
type Config struct {
	Locate Locator
	// UserName names a uid ("" when it has no account).
	UserName func(uid uint32) string
	// Record receives each explained attempt; it must not block.
	Record func(Attempt)
	Logger *slog.Logger
	// Hostname is this server's name in the replies.
	Hostname string

	MaxConns    int           // connections served at once (32); more are closed and counted
	Session     time.Duration // the whole session's deadline (10s)
	Idle        time.Duration // wait for each command line (5s)
	LocateLimit time.Duration // finding the origin, before the greeting (500ms)
	MaxCommands int           // commands answered before closing (10)
	Now         func() time.Time
}

func (c *Config) defaults() {
	if c.MaxConns <= 0 {
		c.MaxConns = 32
	}
	if c.Session <= 0 {
		c.Session = 10 * time.Second
	}
	if c.Idle <= 0 {
		c.Idle = 5 * time.Second
	}
	if c.LocateLimit <= 0 {
		c.LocateLimit = 500 * time.Millisecond
	}
	if c.MaxCommands <= 0 {
		c.MaxCommands = 10
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	if c.UserName == nil {
		c.UserName = func(uint32) string { return "" }
	}
	if c.Record == nil {
		c.Record = func(Attempt) {}
	}
}

// maxLine is RFC 5321's limit on a command line, CRLF included (4.5.3.1.4).
const maxLine = 512

// Server answers explained connections.
type Server struct {
	cfg   Config
	slots chan struct{}
	// Served and Dropped count connections answered and closed unanswered
	// because MaxConns were being served.
	served, dropped atomic.Int64
}

// New prepares a server.
func New(cfg Config) *Server {
	cfg.defaults()
	return &Server{cfg: cfg, slots: make(chan struct{}, cfg.MaxConns)}
}

// Served is how many connections were answered.
func (s *Server) Served() int64 { return s.served.Load() }

// Dropped is how many connections were closed unanswered (over MaxConns).
func (s *Server) Dropped() int64 { return s.dropped.Load() }

// Serve answers connections from ln until ctx ends, then closes ln and waits
// for the sessions under way (each ends within Session).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
			}
			// Out of file descriptors, or a connection aborted before
			// accept: let sessions end and try again.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		select {
		case s.slots <- struct{}{}:
		default:
			// A flood: close at once rather than queue. The kernel's own
			// event still counts the attempt.
			s.dropped.Add(1)
			c.Close()
			continue
		}
		wg.Go(func() {
			defer func() { <-s.slots }()
			s.session(ctx, c)
		})
	}
}

// session is one connection's whole dialogue.
func (s *Server) session(ctx context.Context, c net.Conn) {
	defer c.Close()
	start := s.cfg.Now()
	end := time.Now().Add(s.cfg.Session)
	c.SetDeadline(end)
	// A daemon stopping ends its sessions at once.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	lctx, cancel := context.WithTimeout(ctx, s.cfg.LocateLimit)
	var o Origin
	var err error
	if s.cfg.Locate != nil {
		o, err = s.cfg.Locate(lctx, c)
	} else {
		err = errors.New("no locator")
	}
	cancel()
	known := err == nil
	if !known {
		s.cfg.Logger.Debug("explain: connection of unknown origin", "peer", c.RemoteAddr().String(), "err", err)
	}
	user := ""
	if o.HasUID {
		user = s.cfg.UserName(o.UID)
	}
	ref := ""
	if known {
		ref = Ref(o.UID, o.Dst, start)
		s.cfg.Record(Attempt{Time: start, Origin: o, User: user, Ref: ref})
	}
	s.served.Add(1)
	reason := Reason(user, o, known, ref)
	s.dialogue(ctx, c, reason, end)
}

// dialogue writes the greeting and answers commands until QUIT, the limit,
// the session's end or ctx's.
func (s *Server) dialogue(ctx context.Context, c net.Conn, reason string, end time.Time) {
	w := bufio.NewWriter(c)
	reply := func(line string) bool {
		w.WriteString(line)
		w.WriteString("\r\n")
		return w.Flush() == nil
	}
	if !reply("554 5.7.1 " + s.cfg.Hostname + " " + reason) {
		return
	}
	r := bufio.NewReaderSize(c, maxLine)
	for range s.cfg.MaxCommands {
		if ctx.Err() != nil {
			return // a new read deadline would undo the stop's
		}
		// Each wait ends by the session's end: a read deadline replaces
		// the one SetDeadline set.
		wait := time.Now().Add(s.cfg.Idle)
		if wait.After(end) {
			wait = end
		}
		c.SetReadDeadline(wait)
		line, err := readLine(r)
		switch {
		case errors.Is(err, errLineTooLong):
			if !reply("500 5.5.6 Line too long (RFC 5321: 512 octets at most); " + reason) {
				return
			}
			continue
		case err != nil:
			return // closed, or too slow: nothing left to tell
		}
		verb, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if strings.EqualFold(verb, "QUIT") {
			reply("221 2.0.0 " + s.cfg.Hostname + " closing connection")
			return
		}
		// RFC 5321 3.1: after a 554 greeting, every command but QUIT gets
		// 503. The reason is repeated, since many clients report only the
		// reply to the command that failed.
		if !reply("503 5.7.1 " + reason) {
			return
		}
	}
	reply("421 4.7.0 " + s.cfg.Hostname + " too many commands, closing connection")
}

var errLineTooLong = errors.New("line too long")

// readLine reads one line of at most maxLine bytes, CRLF (or LF) included.
// A longer line is discarded up to its end and reported as errLineTooLong.
func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		// Skip the rest of the line; the read deadline bounds this.
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = r.ReadSlice('\n')
		}
		if err != nil {
			return "", err
		}
		return "", errLineTooLong
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) > 0 {
			return string(line), nil
		}
		return "", err
	}
	return string(line), nil
}

// Reason is the explanation the greeting and every 503 carry: one line
// naming the user, the destination, what to do instead and the reference.
func Reason(user string, o Origin, known bool, ref string) string {
	if !known {
		return "smtpguard: this port answers only connections that smtpguard refused; nothing is accepted here"
	}
	who := "user " + sanitize(user)
	switch {
	case user != "":
	case o.HasUID:
		who = "uid " + strconv.FormatUint(uint64(o.UID), 10)
	default:
		who = "this process"
	}
	dst := o.Dst.Addr().Unmap().String()
	text := fmt.Sprintf("smtpguard: %s may not connect directly to remote mail server %s port %d;"+
		" send through the local MTA on localhost:25 (sendmail or SMTP to localhost) or ask the administrator for an exception;"+
		" reference %s", who, dst, o.Dst.Port(), ref)
	// A reply line is at most 512 octets with its code and CRLF.
	if len(text) > 400 {
		text = text[:400]
	}
	return text
}

// sanitize keeps a name printable on one reply line.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}

// Ref is the reference of an attempt: the same for every attempt of one
// uid to one destination and port within one minute, which is what the
// daemon stores as one aggregate, so every reference ever quoted can be
// looked up.
func Ref(uid uint32, dst netip.AddrPort, t time.Time) string {
	key := fmt.Sprintf("%d %s %d %d", uid, dst.Addr().Unmap(), dst.Port(), t.Unix()/60)
	sum := sha256.Sum256([]byte(key))
	return "sg-" + hex.EncodeToString(sum[:5])
}
