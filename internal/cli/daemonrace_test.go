package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/fake"
	"github.com/smtpguard/smtpguard/internal/enforce/remote"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

// takenOver is the command's own backend while a daemon starts: its first
// write finds the table taken over (the nft backend's refusal of a table
// another process owns), after takeOver ran; later writes work.
type takenOver struct {
	*fake.Backend
	takeOver func()
	refused  bool
}

func (b *takenOver) refuse() error {
	if b.refused {
		return nil
	}
	b.refused = true
	if b.takeOver != nil {
		b.takeOver()
	}
	return fmt.Errorf("table inet smtpguard is owned by another process (netlink port 4242, usually its pid): %w", enforce.ErrOwnedElsewhere)
}

func (b *takenOver) Apply(ctx context.Context, rs policy.Ruleset) error {
	if err := b.refuse(); err != nil {
		return err
	}
	return b.Backend.Apply(ctx, rs)
}

func (b *takenOver) Remove(ctx context.Context) error {
	if err := b.refuse(); err != nil {
		return err
	}
	return b.Backend.Remove(ctx)
}

// startServe starts "serve" on the harness's state directory, with its own
// kernel, and returns once its socket answers: the daemon may still be
// converging (it waits for the state lock a command holds).
func (h *harness) startServe(t *testing.T) *fake.Backend {
	t.Helper()
	kernel := fake.New("fake")
	opts := h.opts
	opts.ServeBackends = func(*slog.Logger, bool) []enforce.Backend { return []enforce.Backend{kernel} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- RunWith(ctx, []string{"--state-dir", h.stateDir, "serve", "--listen", ""},
			Stdio{In: strings.NewReader(""), Out: io.Discard, Err: io.Discard}, opts)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited with %d", code)
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10s")
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := remote.Ping(ctx, remote.SocketPath(h.stateDir)); err == nil {
			return kernel
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d before answering on its socket", code)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not answer on its socket within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) auditRecords() []store.AuditRecord {
	h.t.Helper()
	var recs []store.AuditRecord
	if err := json.Unmarshal([]byte(h.ok("audit", "--json")), &recs); err != nil {
		h.t.Fatalf("audit --json: %v", err)
	}
	return recs
}

// raceCases are the changes a command can make while a daemon starts.
var raceCases = []struct {
	name  string
	setup []string // run before, without a daemon
	stdin string
	args  []string
	op    string // the audit record's operation
	write string // the kernel call that changes the rules
	// done reports what is wrong with the daemon's kernel and the stored
	// policy after the change, "" when nothing.
	done func(kernel *fake.Backend, st statusJSON) string
}{
	{
		name: "allow", args: []string{"allow", "user", "alice"}, op: "allow", write: "apply",
		done: func(kernel *fake.Backend, st statusJSON) string {
			if rs := kernel.Installed(); rs == nil || !slices.Contains(rs.UIDs, 1001) {
				return fmt.Sprintf("daemon's kernel %+v, want alice (1001) allowed", rs)
			}
			if !slices.Equal(st.AllowedUsers, []string{"alice"}) {
				return fmt.Sprintf("stored allowed users %v, want [alice]", st.AllowedUsers)
			}
			return ""
		},
	},
	{
		name: "disable", args: []string{"disable"}, op: "disable", write: "remove",
		done: func(kernel *fake.Backend, st statusJSON) string {
			if st.Enabled || kernel.Installed() != nil {
				return fmt.Sprintf("stored enabled %t, daemon's kernel %+v; want both off", st.Enabled, kernel.Installed())
			}
			return ""
		},
	},
	{
		name: "import", args: []string{"import", "-"}, op: "import", write: "apply",
		stdin: "version = 1\nenabled = true\nbackend = \"fake\"\nallowed_users = [\"bob\"]\n",
		done: func(kernel *fake.Backend, st statusJSON) string {
			if rs := kernel.Installed(); rs == nil || !slices.Contains(rs.UIDs, 1002) {
				return fmt.Sprintf("daemon's kernel %+v, want bob (1002) allowed", rs)
			}
			if !slices.Equal(st.AllowedUsers, []string{"bob"}) {
				return fmt.Sprintf("stored allowed users %v, want [bob]", st.AllowedUsers)
			}
			return ""
		},
	},
	{
		name: "hold", setup: []string{"allow", "user", "bob"}, args: []string{"hold", "user", "bob"}, op: "hold", write: "apply",
		done: func(kernel *fake.Backend, st statusJSON) string {
			if rs := kernel.Installed(); rs == nil || slices.Contains(rs.UIDs, 1002) {
				return fmt.Sprintf("daemon's kernel %+v, want it enforcing with bob (1002) held", rs)
			}
			return ""
		},
	},
}

// A change command that started while the daemon was starting found no
// socket, and the kernel then refused its write because the daemon had taken
// the table over meanwhile. The command makes its change through that
// daemon: exit 0, nothing on stderr, the change stored once with one audit
// record (not also a failed one).
func TestChangeRefusedByADaemonThatStartedMeanwhileGoesThroughIt(t *testing.T) {
	for _, tc := range raceCases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok("enable")
			if tc.setup != nil {
				h.ok(tc.setup...)
			}
			before := len(h.auditRecords())
			var kernel *fake.Backend
			own := &takenOver{Backend: h.backend, takeOver: func() { kernel = h.startServe(t) }}
			h.opts.Backends = func(*slog.Logger) []enforce.Backend { return []enforce.Backend{own} }
			calls := len(h.backend.Calls())

			r := h.runIn(tc.stdin, tc.args...)
			if r.code != ExitOK || r.stderr != "" {
				t.Fatalf("smtpguard %s: exit %d, stderr %q; want exit 0 and nothing on stderr", strings.Join(tc.args, " "), r.code, r.stderr)
			}
			if kernel == nil {
				t.Fatal("the command never wrote to the kernel")
			}
			if got := h.backend.Calls()[calls:]; slices.Contains(got, "apply") || slices.Contains(got, "remove") {
				t.Errorf("the command's own backend changed the kernel after the refusal: %v", got)
			}
			if !slices.Contains(kernel.Calls(), tc.write) {
				t.Errorf("daemon's kernel calls %v, want %s", kernel.Calls(), tc.write)
			}
			if msg := tc.done(kernel, h.status()); msg != "" {
				t.Error(msg)
			}
			all := h.auditRecords() // newest first
			recs := all[:len(all)-before]
			var got []string
			for _, rec := range recs {
				got = append(got, rec.Operation+": "+rec.Outcome)
			}
			if want := []string{tc.op + ": ok"}; !slices.Equal(got, want) {
				t.Errorf("audit records of the command %q, want %q", got, want)
			}
		})
	}
}

// The kernel refuses the write as owned by another process, yet no daemon
// answers on the socket (another tool owns the table): the command fails
// once, with one line, and stores nothing but one failed audit record.
func TestChangeRefusedAsOwnedElsewhereWithNoDaemonFailsOnce(t *testing.T) {
	for _, tc := range raceCases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok("enable")
			if tc.setup != nil {
				h.ok(tc.setup...)
			}
			h.backend.FailApply(fmt.Errorf("table inet smtpguard is owned by another process (netlink port 4242, usually its pid): %w", enforce.ErrOwnedElsewhere))
			h.backend.FailRemove(fmt.Errorf("table inet smtpguard is owned by another process (netlink port 4242, usually its pid): %w", enforce.ErrOwnedElsewhere))
			stBefore, auditBefore := h.status(), h.auditRecords()

			r := h.runIn(tc.stdin, tc.args...)
			if r.code != ExitFailure || !strings.Contains(r.stderr, "owned by another process") || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("smtpguard %s: exit %d, stderr %q; want exit 1 and one line saying the table is owned by another process",
					strings.Join(tc.args, " "), r.code, r.stderr)
			}
			if st := h.status(); !slices.Equal(st.AllowedUsers, stBefore.AllowedUsers) || st.Enabled != stBefore.Enabled {
				t.Errorf("refused change stored: status %+v, was %+v", st, stBefore)
			}

			all := h.auditRecords() // newest first
			recs := all[:len(all)-len(auditBefore)]
			if len(recs) != 1 || recs[0].Operation != tc.op || !strings.HasPrefix(recs[0].Outcome, "failed: ") {
				t.Errorf("audit records of the refused command %+v, want one failed %s", recs, tc.op)
			}
			if tc.name == "hold" {
				if out := h.ok("release", "user", "bob"); !strings.Contains(out, "not held") {
					t.Errorf("refused hold stored: release user bob said %q", out)
				}
			}
		})
	}
}
