//go:build linux

package bpf

import (
	"context"
	"errors"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// failingMap refuses every element write, as a full map or a kernel out of
// memory would.
type failingMap struct{ kmap }

func (failingMap) Update(any, any, ebpf.MapUpdateFlags) error { return errors.New("injected failure") }

// TestPrivilegedBPFFailedApplyKeepsTheExplainPort: an Apply that fails
// half-way leaves the kernel enforcing what it did before, the explain
// responder's port included (enforce.Backend's promise): a new port
// written before the failure would send explained clients to a port
// nothing of smtpguard listens on.
func TestPrivilegedBPFFailedApplyKeepsTheExplainPort(t *testing.T) {
	bk := newSyncBackend(t)
	ctx := context.Background()
	old := policy.Ruleset{Mode: policy.ModeExplain, ExplainPort: 11025, Ports: []uint16{25, 465, 587}, AllowLocal: true, UIDs: []uint32{1001}}
	if err := bk.Apply(ctx, old); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	next := old
	next.ExplainPort, next.UIDs = 12025, []uint32{1001, 1002}
	bk.wrapMap = func(name string, m kmap) kmap {
		if name == mapUIDs {
			return failingMap{m}
		}
		return m
	}
	err := bk.Apply(ctx, next)
	bk.wrapMap = nil
	if err == nil {
		t.Fatal("Apply with a failing map write succeeded")
	}
	d, err := bk.Verify(ctx, old)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !d.InSync() {
		t.Errorf("after a failed Apply the kernel no longer enforces the previous ruleset: %s", d)
	}
}
