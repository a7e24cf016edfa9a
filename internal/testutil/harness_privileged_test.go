//go:build linux

package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPrivilegedHarness proves the harness the privileged tests stand on:
// namespaces really are separate, listeners answer, ConnectAs connects as the
// user it was given over IPv4, IPv6 and IPv4-mapped IPv6, refusals come back
// with the exact errno at once, and everything is cleaned up.
func TestPrivilegedHarness(t *testing.T) {
	Privileged(t)
	hostLinks := run(t, "ip", "-br", "addr", "show")
	client, server := NewNetNS(t), NewNetNS(t)
	Veth(t, client, []string{"192.0.2.1/24", "2001:db8::1/64"}, server, []string{"192.0.2.2/24", "2001:db8::2/64"})
	ListenTCP(t, server, "192.0.2.2:25")
	ListenTCP(t, server, "[2001:db8::2]:25")
	ListenTCP(t, client, "127.0.0.1:25")
	ListenTCP(t, client, "[::1]:25")
	group, gid := NewGroup(t, "grp")
	plain := NewUser(t, "plain", "")
	primary := NewUser(t, "prim", group)
	supp := NewUser(t, "supp", "", group)

	// The banner each address must answer with; the mapped address reaches
	// the IPv4 listener.
	listeners := map[string]string{
		"192.0.2.2:25":          Banner("192.0.2.2:25"),
		"[2001:db8::2]:25":      Banner("[2001:db8::2]:25"),
		"[::ffff:192.0.2.2]:25": Banner("192.0.2.2:25"),
		"127.0.0.1:25":          Banner("127.0.0.1:25"),
		"[::1]:25":              Banner("[::1]:25"),
	}
	addrs := slices.Sorted(func(yield func(string) bool) {
		for a := range listeners {
			if !yield(a) {
				return
			}
		}
	})

	t.Run("namespaces are separate and named", func(t *testing.T) {
		for _, ns := range []*NetNS{client, server} {
			if !strings.HasPrefix(ns.Name, NetNSPrefix) {
				t.Errorf("namespace %q lacks prefix %q", ns.Name, NetNSPrefix)
			}
			var st unix.Statfs_t
			if err := unix.Statfs(ns.Path(), &st); err != nil || st.Type != unix.NSFS_MAGIC {
				t.Errorf("%s is not a namespace file: %v (fs type %#x)", ns.Path(), err, st.Type)
			}
		}
		if out := client.Exec(t, "ip", "-br", "addr", "show"); !strings.Contains(out, "192.0.2.1/24") || !strings.Contains(out, "2001:db8::1/64") {
			t.Errorf("client namespace addresses:\n%s", out)
		}
		if out := client.Exec(t, "ip", "-br", "link", "show", "lo"); !strings.Contains(out, "UP") {
			t.Errorf("client loopback not up: %s", out)
		}
		// The host's interfaces and addresses are untouched: no veth end,
		// no test address (the host may use documentation addresses itself).
		if now := run(t, "ip", "-br", "addr", "show"); now != hostLinks || strings.Contains(now, "sgv") {
			t.Errorf("the host's interfaces changed:\n%s\nwere:\n%s", now, hostLinks)
		}
	})

	t.Run("Exec fails the test with the command's output", func(t *testing.T) {
		f := &fakeTB{name: t.Name()}
		f.run(func(tb testing.TB) { client.Exec(tb, "ip", "link", "show", "sgt-no-such-link") })
		if !f.failed || !strings.Contains(f.msg, "sgt-no-such-link") || !strings.Contains(f.msg, client.Name) {
			t.Errorf("Exec of a failing command: failed=%v message %q", f.failed, f.msg)
		}
	})

	t.Run("Do runs in the namespace and puts the thread back", func(t *testing.T) {
		var want unix.Stat_t
		if err := unix.Stat(client.Path(), &want); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 20)
		for range 20 {
			wg.Go(func() {
				errs <- client.Do(func() error {
					var in unix.Stat_t
					if err := unix.Stat("/proc/thread-self/ns/net", &in); err != nil {
						return err
					}
					if in.Dev != want.Dev || in.Ino != want.Ino {
						return fmt.Errorf("fn ran in namespace %d:%d, want %d:%d", in.Dev, in.Ino, want.Dev, want.Ino)
					}
					return nil
				})
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		// No thread of this process may be left in the client namespace.
		home, err := os.Readlink("/proc/self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		tasks, _ := filepath.Glob("/proc/self/task/*/ns/net")
		for _, task := range tasks {
			if ns, err := os.Readlink(task); err == nil && ns != home {
				t.Errorf("thread %s left in %s, want %s", task, ns, home)
			}
		}
		sentinel := errors.New("from fn")
		if err := client.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
			t.Errorf("Do returned %v, want fn's error", err)
		}
		if err := (&NetNS{Name: "sgt-nonexistent"}).Do(func() error { return nil }); err == nil {
			t.Error("Do in a missing namespace succeeded")
		}
	})

	t.Run("test users have the requested groups", func(t *testing.T) {
		for _, u := range []User{plain, primary, supp} {
			fields := strings.Split(strings.TrimSpace(run(t, "getent", "passwd", u.Name)), ":")
			if len(fields) != 7 || fields[6] != "/usr/sbin/nologin" {
				t.Errorf("passwd entry of %s = %q, want shell /usr/sbin/nologin", u.Name, fields)
			} else if _, err := os.Stat(fields[5]); err == nil {
				t.Errorf("home directory %s of %s exists, want none", fields[5], u.Name)
			}
			if !generatedAccount.MatchString(u.Name) || len(u.Name) > maxAccountName || u.UID == 0 {
				t.Errorf("user %+v: want a generated name and a non-root uid", u)
			}
		}
		if plain.GID == gid || slices.Contains(plain.Groups, gid) {
			t.Errorf("plain %+v is in the group %s (%d)", plain, group, gid)
		}
		if primary.GID != gid || slices.Contains(primary.Groups, gid) {
			t.Errorf("primary %+v: want primary gid %d only", primary, gid)
		}
		if supp.GID == gid || !slices.Contains(supp.Groups, gid) {
			t.Errorf("supp %+v: want gid %d as a supplementary group only", supp, gid)
		}
	})

	t.Run("root and ordinary users reach every listener", func(t *testing.T) {
		for _, u := range []*User{nil, &plain, &primary, &supp} {
			for _, r := range ConnectAs(t, client, u, addrs...) {
				if !r.OK || r.Errno != "" {
					t.Errorf("%s cannot connect: %s", userName(u), r)
				} else if r.Banner != listeners[r.Addr] {
					t.Errorf("%s to %s got banner %q, want %q", userName(u), r.Addr, r.Banner, listeners[r.Addr])
				}
			}
		}
	})

	t.Run("a port without a listener is refused at once", func(t *testing.T) {
		closed := []string{"192.0.2.2:26", "[2001:db8::2]:26", "[::ffff:192.0.2.2]:26", "127.0.0.1:26", "[::1]:26"}
		for _, u := range []*User{nil, &plain} {
			for _, r := range ConnectAs(t, client, u, closed...) {
				if r.OK || r.Errno != "ECONNREFUSED" || r.Elapsed > 500*time.Millisecond {
					t.Errorf("%s: %s, want ECONNREFUSED within 500ms", userName(u), r)
				}
			}
		}
	})

	t.Run("an address nobody answers times out within the bound", func(t *testing.T) {
		// 192.0.2.3 is on the link but absent: no ARP answer, the SYN is never sent.
		start := time.Now()
		r := ConnectAs(t, client, &plain, "192.0.2.3:25")[0]
		if r.OK || (r.Errno != "ETIMEDOUT" && r.Errno != "EHOSTUNREACH") {
			t.Errorf("connect to an absent host: %s, want ETIMEDOUT or EHOSTUNREACH", r)
		}
		if took := time.Since(start); took > ConnectTimeout+3*time.Second {
			t.Errorf("ConnectAs took %v, want about ConnectTimeout (%v)", took, ConnectTimeout)
		}
	})

	t.Run("the kernel sees the user's uid and primary gid", func(t *testing.T) {
		// Rules in our own client namespace only: refuse plain's uid on port
		// 25 and the group's gid on the IPv6 port 25.
		ruleset := fmt.Sprintf(`table inet sgtharness {
	chain out {
		type filter hook output priority filter; policy accept;
		meta skuid %d tcp dport 25 reject with tcp reset
		meta skgid %d tcp dport 25 reject with tcp reset
	}
}`, plain.UID, gid)
		cmd := client.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(ruleset)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft -f in %s: %v\n%s", client.Name, err, out)
		}
		defer client.Exec(t, "nft", "delete", "table", "inet", "sgtharness")
		remote := []string{"192.0.2.2:25", "[2001:db8::2]:25", "[::ffff:192.0.2.2]:25"}
		for _, c := range []struct {
			u       *User
			refused bool
		}{{nil, false}, {&plain, true}, {&primary, true}, {&supp, false}} {
			for _, r := range ConnectAs(t, client, c.u, remote...) {
				if c.refused && (r.OK || r.Errno != "ECONNREFUSED") {
					t.Errorf("%s was not matched by its uid/gid rule: %s", userName(c.u), r)
				}
				if !c.refused && !r.OK {
					t.Errorf("%s was refused by a rule for another uid/gid: %s", userName(c.u), r)
				}
			}
		}
	})

	t.Run("the helper takes on exactly the user's credentials", func(t *testing.T) {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		// No addresses: the helper only drops privileges and checks them.
		for _, u := range []User{plain, primary, supp} {
			if _, err := callHelper(connectRequest{UID: u.UID, GID: u.GID, Groups: u.Groups}, "ip", "netns", "exec", client.Name, exe); err != nil {
				t.Errorf("helper as %s: %v", u.Name, err)
			}
		}
	})

	t.Run("cleanup removes namespaces and accounts", func(t *testing.T) {
		var ns *NetNS
		var user User
		var grp string
		t.Run("create", func(t *testing.T) {
			ns = NewNetNS(t)
			grp, _ = NewGroup(t, "tmp")
			user = NewUser(t, "tmpu", grp, group)
		})
		if _, err := os.Stat(ns.Path()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s still there after its test: %v", ns.Name, err)
		}
		for _, name := range []string{user.Name, grp} {
			if accountExists(name) {
				t.Errorf("account %s still there after its test", name)
			}
			if _, err := os.Stat(recordPath(kindAccount, name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("owner record of %s still there: %v", name, err)
			}
		}
		if _, err := os.Stat(recordPath(kindNetNS, ns.Name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("owner record of %s still there: %v", ns.Name, err)
		}
	})

	t.Run("RemoveLeftovers removes a dead run's objects only", func(t *testing.T) {
		deadNS := newNetNSName()
		deadUser, _ := accountName("left")
		deadGroup, _ := accountName("leftg")
		t.Cleanup(func() { // in case RemoveLeftovers fails
			deleteAccount("userdel", deadUser)
			deleteAccount("groupdel", deadUser)
			deleteAccount("groupdel", deadGroup)
			deleteNetNS(deadNS)
			release(kindNetNS, deadNS)
		})
		// A namespace whose record names a process that is gone, and
		// accounts with no record at all (as a crash of older code leaves).
		gone := exec.Command("true")
		if err := gone.Run(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(recordPath(kindNetNS, deadNS), fmt.Appendf(nil, "%d 1\n", gone.Process.Pid), 0o600); err != nil {
			t.Fatal(err)
		}
		run(t, "ip", "netns", "add", deadNS)
		if out, err := runAccountCmd("groupadd", deadGroup); err != nil {
			t.Fatalf("groupadd: %v %s", err, out)
		}
		if out, err := runAccountCmd("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", "--groups", deadGroup, deadUser); err != nil {
			t.Fatalf("useradd: %v %s", err, out)
		}
		if err := RemoveLeftovers(); err != nil {
			t.Errorf("RemoveLeftovers: %v", err)
		}
		if _, err := os.Stat("/run/netns/" + deadNS); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("leftover namespace %s survived: %v", deadNS, err)
		}
		if _, err := os.Stat(recordPath(kindNetNS, deadNS)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale record of %s survived: %v", deadNS, err)
		}
		for _, name := range []string{deadUser, deadGroup} {
			if accountExists(name) {
				t.Errorf("leftover account %s survived", name)
			}
		}
		// Ours, owned by this live process, must all still be there and work.
		for _, ns := range []*NetNS{client, server} {
			if _, err := os.Stat(ns.Path()); err != nil {
				t.Errorf("RemoveLeftovers deleted live namespace %s: %v", ns.Name, err)
			}
		}
		for _, name := range []string{plain.Name, primary.Name, supp.Name, group} {
			if !accountExists(name) {
				t.Errorf("RemoveLeftovers deleted live account %s", name)
			}
		}
		if r := ConnectAs(t, client, &plain, "192.0.2.2:25")[0]; !r.OK {
			t.Errorf("after RemoveLeftovers: %s", r)
		}
	})
}
