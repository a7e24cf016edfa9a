// Package remote lets the CLI change the kernel through the running daemon,
// which may be the only process allowed to (it can own its nftables table).
// The daemon serves its own backends on a root-only unix socket in the state
// directory; the CLI's engine uses a Backend of this package in place of each
// local one, so validation, the store transaction, rollback and the audit
// record stay in the CLI process and the engine stays the only path that
// changes state. One JSON request and one JSON answer per connection.
package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"syscall"
	"time"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// SocketFile is the daemon's socket, in the state directory: each state
// directory has its own daemon and CLI pair.
const SocketFile = "daemon.sock"

// SocketPath is the daemon socket of a state directory.
func SocketPath(stateDir string) string { return filepath.Join(stateDir, SocketFile) }

// ErrNoDaemon means no daemon listens on the socket: the file is missing, or
// left behind by a daemon that died. The CLI then works directly.
var ErrNoDaemon = errors.New("no smtpguard daemon is running")

// maxResponse bounds an answer (a drift report lists problems, not rules).
const maxResponse = 4 << 20

// defaultCallTimeout bounds a call whose context has no deadline: a full
// rebuild at 10,000 uids takes under a second, so minutes mean a hung daemon.
const defaultCallTimeout = 2 * time.Minute

// call sends one request and reads its answer.
func call(ctx context.Context, socket string, req request) (response, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultCallTimeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return response{}, fmt.Errorf("%w (socket %s)", ErrNoDaemon, socket)
		}
		return response{}, fmt.Errorf("connect to the smtpguard daemon at %s: %w", socket, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	sendErr := json.NewEncoder(conn).Encode(req)
	var resp response
	if err := json.NewDecoder(io.LimitReader(conn, maxResponse)).Decode(&resp); err != nil {
		if sendErr != nil {
			// The daemon hung up before taking the whole request, without
			// saying why (a refusal would have been read above).
			return response{}, fmt.Errorf("send %s to the smtpguard daemon at %s: %w", req.Op, socket, sendErr)
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return response{}, fmt.Errorf("read the smtpguard daemon's answer to %s at %s: %w (it may have stopped; see 'journalctl -u smtpguard')", req.Op, socket, err)
	}
	if resp.Error != "" {
		return response{}, &remoteError{msg: resp.Error, notSupported: resp.NotSupported}
	}
	return resp, nil
}

// Ping asks the daemon of socket about itself. It returns an error wrapping
// ErrNoDaemon when none runs.
func Ping(ctx context.Context, socket string) (Info, error) {
	resp, err := call(ctx, socket, request{Op: opPing})
	if err != nil {
		return Info{}, err
	}
	if resp.Daemon == nil {
		return Info{}, fmt.Errorf("the smtpguard daemon at %s answered a ping without describing itself", socket)
	}
	return *resp.Daemon, nil
}

// Backend stands for one of the daemon's backends: Apply, Remove, Verify and
// Probe are performed by the daemon; Name and Render are the local backend's.
type Backend struct {
	socket string
	local  enforce.Backend
}

// New returns a Backend that sends local's work to the daemon at socket.
func New(socket string, local enforce.Backend) *Backend {
	return &Backend{socket: socket, local: local}
}

// Wrap returns a remote Backend for each of locals.
func Wrap(socket string, locals []enforce.Backend) []enforce.Backend {
	out := make([]enforce.Backend, len(locals))
	for i, b := range locals {
		out[i] = New(socket, b)
	}
	return out
}

// Name is part of enforce.Backend.
func (b *Backend) Name() string { return b.local.Name() }

// Render is part of enforce.Backend: rendering needs no kernel.
func (b *Backend) Render(rs policy.Ruleset) string { return b.local.Render(rs) }

// Probe is part of enforce.Backend.
func (b *Backend) Probe(ctx context.Context) error {
	_, err := call(ctx, b.socket, request{Op: opProbe, Backend: b.Name()})
	return err
}

// Apply is part of enforce.Backend.
func (b *Backend) Apply(ctx context.Context, rs policy.Ruleset) error {
	_, err := call(ctx, b.socket, request{Op: opApply, Backend: b.Name(), Ruleset: toWire(rs)})
	return err
}

// Remove is part of enforce.Backend.
func (b *Backend) Remove(ctx context.Context) error {
	_, err := call(ctx, b.socket, request{Op: opRemove, Backend: b.Name()})
	return err
}

// Verify is part of enforce.Backend.
func (b *Backend) Verify(ctx context.Context, rs policy.Ruleset) (enforce.Drift, error) {
	resp, err := call(ctx, b.socket, request{Op: opVerify, Backend: b.Name(), Ruleset: toWire(rs)})
	if err != nil {
		return enforce.Drift{}, err
	}
	if resp.Drift == nil {
		return enforce.Drift{}, fmt.Errorf("the smtpguard daemon at %s answered verify without a result", b.socket)
	}
	return *resp.Drift, nil
}

// Describe is part of enforce.Backend: the local backend's facts are the
// daemon's, for the same build.
func (b *Backend) Describe() enforce.Description { return b.local.Describe() }

// Present is part of enforce.Backend. Reading the kernel needs no ownership,
// so it is asked locally.
func (b *Backend) Present(ctx context.Context) (bool, error) { return b.local.Present(ctx) }

// Watch is part of enforce.Backend; the daemon watches the kernel itself.
func (b *Backend) Watch(ctx context.Context, changed func()) error {
	return fmt.Errorf("watch %s through the daemon: %w", b.Name(), enforce.ErrNotSupported)
}

// Events is part of enforce.Backend; the daemon records events itself.
func (b *Backend) Events(ctx context.Context, sink func(enforce.Event)) error {
	return fmt.Errorf("events of %s through the daemon: %w", b.Name(), enforce.ErrNotSupported)
}

// AllowedConnections is enforce.AllowedCounter, read by the local backend:
// the counts are a dump, which needs neither the daemon nor its ownership.
func (b *Backend) AllowedConnections(ctx context.Context) (map[uint32]uint64, error) {
	if ac, ok := b.local.(enforce.AllowedCounter); ok {
		return ac.AllowedConnections(ctx)
	}
	return nil, enforce.ErrNotSupported
}
