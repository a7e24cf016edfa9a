//go:build linux

package bpf

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// pidNSSeen is one attempt helperPidNSReader made (or was told of) and the
// event it read.
type pidNSSeen struct {
	Port uint16
	// ForkPID is the connecting process's pid as the reader's fork
	// returned it: the number the reader's /proc shows. SelfPID is what
	// getpid() told the process itself. Both 0 for an earlier attempt.
	ForkPID, SelfPID int
	Found            bool // an event of the attempt arrived
	PID, TGID        uint32
}

// TestPrivilegedBPFEventsInTheReadersPidNamespace: an event reader (the
// daemon) in its own pid namespace, as in a container (systemd-nspawn, make
// test-fresh), gets the pid of a process in its namespace as its /proc
// numbers it, not as the initial namespace does (the old programs reported
// the initial namespace's pid, which the daemon's /proc enrichment looked up
// as another process or none). Where the pid cannot be numbered in its
// namespace it gets 0, unknown, never a wrong number: a process in a pid
// namespace nested further, an attempt made before the reader wrote its
// namespace, and pins without sg_pidns (an older version's).
func TestPrivilegedBPFEventsInTheReadersPidNamespace(t *testing.T) {
	testutil.Privileged(t)
	if !haveNsPid() {
		t.Skip("this kernel lacks bpf_get_ns_current_pid_tgid for cgroup programs (Linux 6.10): events keep the initial namespace's pids")
	}
	for _, c := range []struct {
		name     string
		unpinned bool
		earlier  bool
	}{
		{"sg_pidns pinned", false, false},
		{"an attempt before the reader started", false, true},
		{"sg_pidns not pinned (an older version's pins)", true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.apply(w.ruleset(policy.ModeReject))
			req := helperRequest{Mode: helperPidNSReader, UID: w.user.UID, GID: w.user.GID,
				Addrs: []string{hostPort(serverV4, 25), hostPort(serverV6, 587)},
				BPFFS: w.bpffs, Cgroup: w.cg.Path, NetNS: w.client.Path(), Unpinned: c.unpinned}
			if c.unpinned {
				// The programs keep the map (zeroes); only the pin goes.
				if err := os.Remove(filepath.Join(w.b.PinDir(), mapPidNS)); err != nil {
					t.Fatal(err)
				}
			}
			if c.earlier {
				// Numbered in the initial namespace (the map holds zeroes
				// yet): the reader must not take it for one of its pids.
				req.EarlierPort = 465
				w.connect(helperConnect, &w.user, hostPort(serverV4, 465))
			}
			res := runReaderInPidNS(t, w, req)
			same, nested := res.Seen[0], res.Seen[1]
			if same.ForkPID != same.SelfPID || same.ForkPID == 0 {
				t.Fatalf("connecting process in the reader's namespace: fork returned %d, getpid %d", same.ForkPID, same.SelfPID)
			}
			pid := uint32(same.ForkPID)
			if c.unpinned {
				pid = 0
			}
			want := []pidNSSeen{
				{Port: 25, ForkPID: same.ForkPID, SelfPID: same.ForkPID, Found: true, PID: pid, TGID: pid},
				{Port: 587, ForkPID: nested.ForkPID, SelfPID: 1, Found: true},
			}
			if c.earlier {
				want = append(want, pidNSSeen{Port: 465, Found: true})
			}
			if diff := cmp.Diff(want, res.Seen); diff != "" {
				t.Errorf("events read in a pid namespace (-want +got):\n%s\nreader's log:\n%s", diff, res.log)
			}
		})
	}
}

type readerResult struct {
	helperResult
	log string
}

// runReaderInPidNS runs helperPidNSReader in a new pid namespace in w's
// cgroup and returns what it saw.
func runReaderInPidNS(t *testing.T, w *world, req helperRequest) readerResult {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(req)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), helperEnv+"="+string(body))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A new mount namespace too: the reader mounts its own /proc.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS}
	if err := w.cg.Start(cmd); err != nil {
		t.Fatalf("start the reader in a new pid namespace: %v", err)
	}
	proc := testutil.Watch(cmd)
	t.Cleanup(proc.Kill)
	select {
	case <-proc.Done():
	case <-time.After(90 * time.Second):
		proc.Kill()
		t.Fatalf("reader still running after 90s; stderr:\n%s", stderr.String())
	}
	if !cmd.ProcessState.Success() {
		t.Fatalf("reader: %v\n%s", cmd.ProcessState, stderr.String())
	}
	res := readerResult{log: stderr.String()}
	if err := json.Unmarshal(lastLine(stdout.Bytes()), &res.helperResult); err != nil {
		t.Fatalf("reader output %q: %v\n%s", stdout.String(), err, stderr.String())
	}
	if len(res.Seen) < 2 {
		t.Fatalf("reader saw %d attempts, want at least 2: %+v\n%s", len(res.Seen), res.Seen, res.log)
	}
	return res
}

// readerEvents is what the reader's EventsDetailed delivered.
type readerEvents struct {
	mu     sync.Mutex
	events []Event
	added  chan struct{}
}

// find waits (bounded) for an event of uid to port.
func (r *readerEvents) find(uid uint32, port uint16, done <-chan error) (Event, bool, error) {
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		for _, e := range r.events {
			if e.UID == uid && e.DstPort == port {
				r.mu.Unlock()
				return e, true, nil
			}
		}
		r.mu.Unlock()
		select {
		case <-r.added:
		case err := <-done:
			return Event{}, false, fmt.Errorf("EventsDetailed ended: %v", err)
		case <-deadline:
			return Event{}, false, nil
		}
	}
}

// runPidNSReader is helperPidNSReader, pid 1 of a new pid namespace (and
// mount namespace): it mounts its /proc, reads events as the daemon does,
// and starts one connecting helper in its namespace and one in a namespace
// nested in it, in the cgroup it was started in.
func runPidNSReader(req helperRequest) ([]pidNSSeen, error) {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return nil, fmt.Errorf("mount /proc: %w", err)
	}
	if os.Getpid() != 1 {
		return nil, fmt.Errorf("reader is pid %d in its namespace, want 1", os.Getpid())
	}
	b := New(Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
		BPFFS: req.BPFFS, CgroupPath: req.Cgroup})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs := &readerEvents{added: make(chan struct{}, 1)}
	done := make(chan error, 1)
	go func() {
		done <- b.EventsDetailed(ctx, func(e Event) {
			evs.mu.Lock()
			evs.events = append(evs.events, e)
			evs.mu.Unlock()
			select {
			case evs.added <- struct{}{}:
			default:
			}
		})
	}()
	// The reader writes its namespace when it opens the ring; events
	// written before stay in the ring for it. Unpinned, nothing tells that
	// it opened, and nothing needs to: the programs number in the initial
	// namespace either way.
	if !req.Unpinned {
		want, err := ownPidNS()
		if err != nil {
			return nil, err
		}
		if err := waitPidNS(b.PinDir(), want, done); err != nil {
			return nil, err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var seen []pidNSSeen
	for i, addr := range req.Addrs {
		body, _ := json.Marshal(helperRequest{Mode: helperConnect, UID: req.UID, GID: req.GID, Addrs: []string{addr}})
		cmd := exec.Command("nsenter", "--net="+req.NetNS, "--", exe)
		cmd.Env = append(os.Environ(), helperEnv+"="+string(body))
		if i == 1 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWPID}
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		s := pidNSSeen{ForkPID: cmd.Process.Pid, Port: netip.MustParseAddrPort(addr).Port()}
		timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
		err := cmd.Wait()
		timer.Stop()
		if err != nil {
			return nil, fmt.Errorf("connecting helper to %s: %w", addr, err)
		}
		var res helperResult
		if err := json.Unmarshal(lastLine(out.Bytes()), &res); err != nil {
			return nil, fmt.Errorf("connecting helper output %q: %w", out.String(), err)
		}
		if len(res.Results) != 1 || res.Results[0].OK {
			return nil, fmt.Errorf("connect to %s was not refused: %+v", addr, res.Results)
		}
		s.SelfPID = res.PID
		e, found, err := evs.find(req.UID, s.Port, done)
		if err != nil {
			return nil, err
		}
		s.Found, s.PID, s.TGID = found, e.PID, e.TGID
		seen = append(seen, s)
	}
	if req.EarlierPort != 0 {
		e, found, err := evs.find(req.UID, req.EarlierPort, done)
		if err != nil {
			return nil, err
		}
		seen = append(seen, pidNSSeen{Port: req.EarlierPort, Found: found, PID: e.PID, TGID: e.TGID})
	}
	return seen, nil
}

// waitPidNS waits (bounded) until sg_pidns under dir holds want. It only
// reads: the reader must have written it.
func waitPidNS(dir string, want [pidNSSize]byte, done <-chan error) error {
	path := filepath.Join(dir, mapPidNS)
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer m.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var have [pidNSSize]byte
		if err := m.Lookup(uint32(0), &have); err != nil {
			return err
		}
		if have == want {
			return nil
		}
		select {
		case err := <-done:
			return fmt.Errorf("EventsDetailed ended: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not name this pid namespace within 10s", mapPidNS)
}
