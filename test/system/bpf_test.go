//go:build linux

package system

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// TestPrivilegedSystemdUnitBPF proves the unit's sandbox leaves the bpf
// backend what it needs: the CLI's enable with the default backend (auto)
// goes over the socket to the daemon the unit runs, which probes, loads,
// pins and attaches bpf under its capabilities, paths and system call
// filter, and the restriction holds for a process of the cgroup.
//
// The programs attach to a child cgroup of the container's own (nspawn
// gives the container a cgroup of the test's, never the host's root).
func TestPrivilegedSystemdUnitBPF(t *testing.T) {
	testutil.Privileged(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	pkg := makePackage(t, ctx)
	// nspawn (systemd 252) forbids bpf() in a container by default: its
	// seccomp filter answers EPERM unless --system-call-filter=bpf, its
	// capability bounding set lacks CAP_BPF and CAP_PERFMON, and it mounts
	// no bpf file system. With those three (a bpf file system of the
	// test's own, never the host's pins) the container stands for a host
	// where bpf works, and the unit's own sandbox is what is tested.
	bpffs := testutil.NewBPFFS(t)
	c := boot(t, ctx, cachedRoot(t, ctx, eximRoot), map[string]string{"root/smtpguard.deb": pkg.path},
		"--capability=CAP_BPF,CAP_PERFMON", "--system-call-filter=bpf", "--bind="+bpffs+":/sys/fs/bpf")
	if out, err := c.run(ctx, 5*time.Minute, "dpkg", "-i", "/root/smtpguard.deb"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	waitFor(t, time.Minute, "the service is active", func() bool { return c.show(ctx, "ActiveState") == "active" })

	// The container's cgroup2 mount and its init's cgroup: the child goes
	// beside init.scope, inside the container's own tree.
	mnt := c.ok(ctx, "findmnt", "-n", "-t", "cgroup2", "-o", "TARGET")
	if i := strings.IndexByte(mnt, '\n'); i >= 0 {
		mnt = mnt[:i]
	}
	own := ""
	for line := range strings.Lines(c.ok(ctx, "cat", "/proc/1/cgroup")) {
		if after, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			own = after
		}
	}
	if own == "" || strings.Contains(own, "..") {
		t.Fatalf("cannot tell the container's cgroup from its /proc/1/cgroup")
	}
	child := filepath.Join(mnt, filepath.Dir(own), testutil.CgroupPrefix+"unit")
	t.Logf("cgroup2 in the container: %s; init in %s; test cgroup %s", mnt, own, child)
	c.ok(ctx, "mkdir", child)

	out, err := c.run(ctx, 2*time.Minute, "/usr/sbin/smtpguard", "enable", "--cgroup", child)
	t.Logf("smtpguard enable --cgroup %s (through the daemon): %v\n%s", child, err, out)
	if err != nil {
		t.Fatalf("enable --cgroup under the unit: %v", err)
	}
	var st struct {
		Backend  string `json:"backend"`
		Cgroup   string `json:"cgroup"`
		Backends []struct {
			Name, Why string
		} `json:"backends"`
		Kernel struct{ State string } `json:"kernel"`
	}
	js := c.ok(ctx, "/usr/sbin/smtpguard", "status", "--json")
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, js)
	}
	t.Logf("status: backend %s, cgroup %s, kernel %s, backends %+v", st.Backend, st.Cgroup, st.Kernel.State, st.Backends)
	if st.Backend != "bpf" || st.Cgroup != child || st.Kernel.State != "in sync" {
		t.Errorf("status under the unit: backend %q on %q, kernel %q; want bpf on %s, in sync (journal: %s)",
			st.Backend, st.Cgroup, st.Kernel.State, child, c.ok(ctx, "journalctl", "-u", "smtpguard", "--no-pager", "-n", "30"))
	}
	// Local addresses are restricted too, so the container's own Exim on
	// loopback stands for a remote server.
	c.ok(ctx, "/usr/sbin/smtpguard", "set", "allow-local", "off")
	connect := func(uid string) error {
		script := `echo $$ > "$0/cgroup.procs" && exec setpriv --reuid=` + uid + ` --regid=` + uid + ` --clear-groups bash -c 'exec 3<>/dev/tcp/127.0.0.1/25'`
		out, err := c.run(ctx, time.Minute, "sh", "-c", script, child)
		if err != nil {
			t.Logf("uid %s connecting from %s: %v: %s", uid, child, err, strings.TrimSpace(out))
		}
		return err
	}
	if connect("65534") == nil {
		t.Error("nobody in the test cgroup connected to port 25 under bpf enforced by the unit's daemon; want refused")
	}
	if err := connect("0"); err != nil {
		t.Errorf("root in the test cgroup could not connect to port 25: %v", err)
	}
	c.ok(ctx, "/usr/sbin/smtpguard", "disable")
	if connect("65534") != nil {
		t.Error("nobody in the test cgroup was still refused after disable")
	}
	if pins := c.ok(ctx, "sh", "-c", "ls /sys/fs/bpf/smtpguard 2>/dev/null || true"); pins != "" {
		t.Errorf("pins left after disable: %s", pins)
	}
}
