//go:build linux

package bench

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
)

// cpuTime is the daemon's user+system CPU time so far, from /proc/PID/stat
// (all threads; clock ticks of 10 ms).
func (d *daemonProc) cpuTime() (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.Cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces: fields count from after its ')'.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", d.Cmd.Process.Pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat: %v %v", d.Cmd.Process.Pid, err1, err2)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// measureChurn is P8: the daemon's CPU time while another table in the
// client namespace changes churnChanges times (fail2ban-like), against its
// CPU time over the same wall time with nothing changing. Before the daemon
// ignored other tables' notifications, each change made it read its own
// table (all its uids) back.
func (s *suite) measureChurn(d *daemonProc) (busy, idle time.Duration) {
	s.b.Helper()
	f, err := os.Open(s.client.Path())
	if err != nil {
		s.b.Fatal(err)
	}
	defer f.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		s.b.Fatal(err)
	}
	t := c.AddTable(&nftables.Table{Name: "f2b-table", Family: nftables.TableFamilyINet})
	set := &nftables.Set{Table: t, Name: "addr-set-sshd", KeyType: nftables.TypeIPAddr}
	if err := c.AddSet(set, nil); err != nil {
		s.b.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		s.b.Fatalf("create the fail2ban-like table: %v", err)
	}
	defer func() {
		c.DelTable(t)
		c.Flush()
	}()
	before, err := d.cpuTime()
	if err != nil {
		s.b.Fatal(err)
	}
	start := time.Now()
	for i := range s.p.churnChanges {
		el := []nftables.SetElement{{Key: net.IPv4(198, 51, 100, byte(i%250+1)).To4()}}
		for _, op := range []func(*nftables.Set, []nftables.SetElement) error{c.SetAddElements, c.SetDeleteElements} {
			if err := op(set, el); err != nil {
				s.b.Fatal(err)
			}
			if err := c.Flush(); err != nil {
				s.b.Fatalf("foreign set change %d: %v", i, err)
			}
		}
	}
	wall := time.Since(start)
	// Let the daemon read what was queued for it before the last change.
	time.Sleep(500 * time.Millisecond) // a settling time for a CPU reading, not a synchronisation
	mid, err := d.cpuTime()
	if err != nil {
		s.b.Fatal(err)
	}
	time.Sleep(wall + 500*time.Millisecond) // the idle baseline over the same wall time
	after, err := d.cpuTime()
	if err != nil {
		s.b.Fatal(err)
	}
	return mid - before, after - mid
}
