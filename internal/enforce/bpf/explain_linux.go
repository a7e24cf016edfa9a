//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// writeExplainPort sets the responder's port for rs, before the config
// switches the programs to explain mode. undo writes back the port it
// replaced, for an Apply that fails after it: Apply is atomic.
func writeExplainPort(ms map[string]*ebpf.Map, rs policy.Ruleset) (undo func() error, err error) {
	m, ok := ms[mapExplainPort]
	if !ok {
		return nil, fmt.Errorf("map %s missing from the collection", mapExplainPort)
	}
	var was uint32
	if err := m.Lookup(uint32(0), &was); err != nil {
		return nil, fmt.Errorf("read map %s: %w", mapExplainPort, err)
	}
	if err := m.Update(uint32(0), explainPortValue(rs), ebpf.UpdateAny); err != nil {
		return nil, fmt.Errorf("update map %s: %w", mapExplainPort, err)
	}
	return func() error {
		if err := m.Update(uint32(0), was, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("restore map %s: %w", mapExplainPort, err)
		}
		return nil
	}, nil
}

// explainProblems reports a responder port other than rs's.
func explainProblems(ms map[string]*ebpf.Map, rs policy.Ruleset) []string {
	m, ok := ms[mapExplainPort]
	if !ok {
		return nil // reported missing already
	}
	var have uint32
	if err := m.Lookup(uint32(0), &have); err != nil {
		return []string{fmt.Sprintf("cannot read map %s: %v", mapExplainPort, err)}
	}
	if want := explainPortValue(rs); have != want {
		return []string{fmt.Sprintf("%s holds port %d, want %d", mapExplainPort, have, want)}
	}
	return nil
}

// ExplainedDestination returns the destination the client socket with this
// cookie dialled before the program sent it to the explain responder, and
// forgets it (it is read once per connection).
func (b *Backend) ExplainedDestination(cookie uint64) (netip.AddrPort, bool) {
	path := filepath.Join(b.PinDir(), mapExplainDst)
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: false})
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			b.log.Warn("cannot open the explained destinations", "pin", path, "err", err)
		}
		return netip.AddrPort{}, false
	}
	defer m.Close()
	v := make([]byte, explainDstSize)
	if err := m.LookupAndDelete(cookie, &v); err != nil {
		return netip.AddrPort{}, false
	}
	dst, err := parseExplainDst(v)
	if err != nil {
		b.log.Warn("unreadable explained destination", "cookie", cookie, "err", err)
		return netip.AddrPort{}, false
	}
	return dst, true
}
