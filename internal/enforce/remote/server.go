package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/smtpguard/smtpguard/internal/enforce"
)

// Defaults of a Server; zero fields take them.
const (
	// DefaultMaxRequest bounds one request. A ruleset of 100,000 uids and
	// as many exceptions is about 5 MB of JSON.
	DefaultMaxRequest = 16 << 20
	// DefaultIdleTimeout is how long a connection may take to send its
	// request, and to read the answer.
	DefaultIdleTimeout = 10 * time.Second
	// DefaultCallTimeout bounds the daemon's work on one request.
	DefaultCallTimeout = 2 * time.Minute
	maxConcurrent      = 16
)

// Server answers requests on the daemon's socket with the daemon's own
// backends, for root only (checked for each connection with SO_PEERCRED). It takes no engine lock: the CLI calling it holds the state lock
// for the whole change, so waiting for it here would deadlock.
type Server struct {
	Backends []enforce.Backend
	// Info describes the daemon for pings; PID and Backends are filled in
	// when left empty.
	Info   func() Info
	Logger *slog.Logger

	MaxRequest  int64
	IdleTimeout time.Duration
	CallTimeout time.Duration
}

// Listen creates the socket at path, replacing a file left there by a daemon
// that died: the caller must be the state directory's only daemon (it holds
// the daemon's pid lock). Only root may connect: the file is mode 0600, and
// every connection's peer is checked again with SO_PEERCRED.
func Listen(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("daemon socket %s exists and is not a socket: remove it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale daemon socket %s: %w", path, err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on daemon socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	// The state directory is 0700 already, and peers are checked, so the
	// moment between bind and chmod exposes nothing.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restrict daemon socket %s: %w", path, err)
	}
	return ln, nil
}

func (s *Server) defaults() {
	if s.MaxRequest <= 0 {
		s.MaxRequest = DefaultMaxRequest
	}
	if s.IdleTimeout <= 0 {
		s.IdleTimeout = DefaultIdleTimeout
	}
	if s.CallTimeout <= 0 {
		s.CallTimeout = DefaultCallTimeout
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
}

// Serve answers connections on ln until ctx ends, then closes ln and waits
// for the requests in progress.
func (s *Server) Serve(ctx context.Context, ln *net.UnixListener) error {
	s.defaults()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, maxConcurrent)
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			s.Logger.Warn("daemon socket: accept failed", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			conn.Close()
			return nil
		}
		wg.Go(func() {
			defer func() { <-slots }()
			s.handle(ctx, conn)
		})
	}
}

// handle answers one request on conn, then closes it.
func (s *Server) handle(ctx context.Context, conn *net.UnixConn) {
	defer conn.Close()
	write := func(resp response) {
		conn.SetWriteDeadline(time.Now().Add(s.IdleTimeout))
		json.NewEncoder(conn).Encode(resp)
	}
	// Read the request before answering even a refusal: closing on a
	// client still writing would hand it "broken pipe" instead of the reason.
	uid, peerErr := peerUID(conn)
	conn.SetReadDeadline(time.Now().Add(s.IdleTimeout))
	var req request
	decodeErr := json.NewDecoder(io.LimitReader(conn, s.MaxRequest)).Decode(&req)
	if peerErr != nil {
		s.Logger.Warn("daemon socket: cannot identify the peer; refused", "err", peerErr)
		write(response{Error: fmt.Sprintf("smtpguard daemon cannot identify the connecting process: %v", peerErr)})
		return
	}
	// Root, or the daemon's own user (who could take over the daemon
	// anyway; only for tests, where the daemon is not root).
	if uid != 0 && uid != uint32(os.Geteuid()) {
		s.Logger.Warn("daemon socket: refused a connection from a non-root user", "uid", uid)
		write(response{Error: fmt.Sprintf("uid %d may not use the smtpguard daemon's socket: only root may change smtpguard's rules (run with sudo)", uid)})
		return
	}
	if decodeErr != nil {
		msg := fmt.Sprintf("bad request: %v", decodeErr)
		if errors.Is(decodeErr, io.ErrUnexpectedEOF) || errors.Is(decodeErr, io.EOF) {
			msg = fmt.Sprintf("bad request: incomplete (at most %d bytes, sent within %v)", s.MaxRequest, s.IdleTimeout)
		}
		write(response{Error: msg})
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.CallTimeout)
	defer cancel()
	write(s.do(ctx, req))
}

func (s *Server) backend(name string) (enforce.Backend, error) {
	for _, b := range s.Backends {
		if b.Name() == name {
			return b, nil
		}
	}
	return nil, fmt.Errorf("the smtpguard daemon has no backend %q", name)
}

func (s *Server) do(ctx context.Context, req request) response {
	if req.Op == opPing {
		var info Info
		if s.Info != nil {
			info = s.Info()
		}
		if info.PID == 0 {
			info.PID = os.Getpid()
		}
		if info.Backends == nil {
			for _, b := range s.Backends {
				info.Backends = append(info.Backends, b.Name())
			}
		}
		return response{Daemon: &info}
	}
	b, err := s.backend(req.Backend)
	if err != nil {
		return errResponse(err)
	}
	log := s.Logger.With("backend", b.Name(), "op", req.Op)
	start := time.Now()
	switch req.Op {
	case opProbe:
		err = b.Probe(ctx)
	case opApply:
		if req.Ruleset == nil {
			return response{Error: "bad request: apply without a ruleset"}
		}
		rs := fromWire(req.Ruleset)
		if err = b.Apply(ctx, rs); err == nil {
			log.Info("applied rules for a command", "allowed_uids", len(rs.UIDs), "took", time.Since(start))
		}
	case opRemove:
		if err = b.Remove(ctx); err == nil {
			log.Info("removed rules for a command", "took", time.Since(start))
		}
	case opVerify:
		if req.Ruleset == nil {
			return response{Error: "bad request: verify without a ruleset"}
		}
		var d enforce.Drift
		if d, err = b.Verify(ctx, fromWire(req.Ruleset)); err == nil {
			return response{Drift: &d}
		}
	default:
		return response{Error: fmt.Sprintf("bad request: unknown operation %q", req.Op)}
	}
	if err != nil {
		log.Debug("request failed", "err", err)
		return errResponse(err)
	}
	return response{}
}

func errResponse(err error) response {
	return response{Error: err.Error(), NotSupported: errors.Is(err, enforce.ErrNotSupported)}
}
