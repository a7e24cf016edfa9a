//go:build linux

package nft

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// fail2ban adds and deletes set elements in its own table several times a
// second; each notification used to make the daemon verify, and so read back,
// its own table. Only changes of our table may call changed.
func TestPrivilegedWatchIgnoresOtherTables(t *testing.T) {
	b, ns := nsBackend(t)
	mustApply(t, b, baseRuleset())
	f2b := filepath.Join(t.TempDir(), "f2b.nft")
	if err := os.WriteFile(f2b, []byte("table inet f2b-table {\n\tset addr-set-sshd {\n\t\ttype ipv4_addr\n\t}\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ns.Exec(t, "nft", "-f", f2b)

	var calls atomic.Int64
	first := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	subscribed := make(chan struct{})
	go func() {
		done <- b.watch(ctx, func() {
			calls.Add(1)
			select {
			case first <- struct{}{}:
			default:
			}
		}, func() { close(subscribed) })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch() = %v", err)
		}
	})
	<-subscribed

	const churn = 50
	for i := range churn {
		ns.Exec(t, "nft", "add", "element", "inet", "f2b-table", "addr-set-sshd", fmt.Sprintf("{ 198.51.100.%d }", i+1))
		ns.Exec(t, "nft", "delete", "element", "inet", "f2b-table", "addr-set-sshd", fmt.Sprintf("{ 198.51.100.%d }", i+1))
	}
	// Notifications arrive in order: once our own change is seen, every
	// foreign one before it has been read too.
	ns.Exec(t, "nft", "add", "element", "inet", tableName, setUIDs, "{ 4242 }")
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported within 10s after our table changed")
	}
	if n := calls.Load(); n > 3 {
		t.Errorf("Watch reported %d changes for %d changes of another table and one of ours, want at most 3 (those of ours)", n, 2*churn)
	}
}
