//go:build linux

package bpf

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// kmap is what the sync code (Apply, Verify, RefreshLocal) does with a
// pinned map. It is *ebpf.Map, or a test's wrapper that counts the
// operations (Backend.wrapMap): each method is one bpf() call.
type kmap interface {
	Type() ebpf.MapType
	KeySize() uint32
	ValueSize() uint32
	MaxEntries() uint32
	Lookup(key, valueOut any) error
	NextKeyBytes(key any) ([]byte, error)
	BatchLookup(cursor *ebpf.MapBatchCursor, keysOut, valuesOut any, opts *ebpf.BatchOptions) (int, error)
	Update(key, value any, flags ebpf.MapUpdateFlags) error
	Delete(key any) error
}

var _ kmap = (*ebpf.Map)(nil)

// batchSize is how many elements one BPF_MAP_LOOKUP_BATCH returns: 10,000
// allowed uids are read in 3 calls instead of 20,000 (get-next-key plus
// lookup per element, what ebpf.MapIterator does). Hash maps need a batch
// at least as large as their largest bucket (else ENOSPC).
const batchSize = 4096

// kmaps wraps each map for the sync code (through b.wrapMap when a test set
// it).
func (b *Backend) kmaps(ms map[string]*ebpf.Map) map[string]kmap {
	out := make(map[string]kmap, len(ms))
	for name, m := range ms {
		out[name] = m
		if b.wrapMap != nil {
			out[name] = b.wrapMap(name, m)
		}
	}
	return out
}

// readEntries reads every element of m, keys and values as strings of
// their bytes: in batches where the kernel has them for the map's type
// (hash and array maps, Linux 5.6), else one element at a time.
func readEntries(m kmap) (map[string]string, error) {
	if canBatch(m) {
		out := map[string]string{}
		err := batchRead(m, func(k, v []byte) { out[string(k)] = string(v) })
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return out, err
		}
	}
	out := map[string]string{}
	var key []byte
	for range int(m.MaxEntries()) + 1 {
		next, err := nextKey(m, key)
		if err != nil || next == nil {
			return out, err
		}
		v := make([]byte, m.ValueSize())
		switch err := m.Lookup(next, &v); {
		case errors.Is(err, ebpf.ErrKeyNotExist): // deleted meanwhile
		case err != nil:
			return nil, err
		default:
			out[string(next)] = string(v)
		}
		key = next
	}
	return nil, fmt.Errorf("map holds more than its %d entries: keys changed while reading", m.MaxEntries())
}

// readKeys is the set of m's keys: in batches where possible, else with
// one get-next-key per element (sets need no values).
func readKeys(m kmap) (map[string]bool, error) {
	if canBatch(m) {
		out := map[string]bool{}
		err := batchRead(m, func(k, _ []byte) { out[string(k)] = true })
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return out, err
		}
	}
	out := map[string]bool{}
	var key []byte
	for range int(m.MaxEntries()) + 1 {
		next, err := nextKey(m, key)
		if err != nil || next == nil {
			return out, err
		}
		out[string(next)] = true
		key = next
	}
	return nil, fmt.Errorf("map holds more than its %d entries: keys changed while reading", m.MaxEntries())
}

// nextKey is the key after key (nil: the first), nil after the last.
func nextKey(m kmap, key []byte) ([]byte, error) {
	if key == nil {
		return m.NextKeyBytes(nil)
	}
	return m.NextKeyBytes(key)
}

// canBatch: LPM tries have no batch operations (Linux 6.18 still), hash
// and array maps have had them since 5.6.
func canBatch(m kmap) bool {
	t := m.Type()
	return t == ebpf.Hash || t == ebpf.Array
}

// batchRead reads m with BPF_MAP_LOOKUP_BATCH, calling fn with each key
// and value (valid during the call only). It returns an error wrapping
// ebpf.ErrNotSupported when the kernel has no batch lookup.
func batchRead(m kmap, fn func(k, v []byte)) error {
	byteT := reflect.TypeFor[byte]()
	n := min(batchSize, int(m.MaxEntries()))
	keys := reflect.MakeSlice(reflect.SliceOf(reflect.ArrayOf(int(m.KeySize()), byteT)), n, n)
	vals := reflect.MakeSlice(reflect.SliceOf(reflect.ArrayOf(int(m.ValueSize()), byteT)), n, n)
	var cursor ebpf.MapBatchCursor
	// Each full batch returns n elements, so the map's capacity bounds the
	// calls; a hash map being changed meanwhile may repeat a few.
	for range int(m.MaxEntries())/n + 3 {
		got, err := m.BatchLookup(&cursor, keys.Interface(), vals.Interface(), nil)
		for i := range got {
			fn(keys.Index(i).Bytes(), vals.Index(i).Bytes())
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return fmt.Errorf("batch lookup did not end after %d calls", int(m.MaxEntries())/n+3)
}

// openInstalled opens the pinned maps when everything Apply would otherwise
// load and attach is already in place: every map pinned with this version's
// layout, both programs pinned with this version's code using those maps,
// and both links running them on cgroup cg. Then a change is element writes
// only; loading the programs (through the verifier, a few ms each time,
// only to find the pinned ones current) is left to the slow path. ok is
// false, and nothing is left open, when anything differs: the caller loads
// and repairs. ids are the maps' kernel ids.
func (b *Backend) openInstalled(cg string) (_ map[string]*ebpf.Map, ids map[string]ebpf.MapID, ok bool) {
	dir := b.PinDir()
	spec := b.collectionSpec(false)
	ms := map[string]*ebpf.Map{}
	defer func() {
		if !ok {
			closeMaps(ms)
		}
	}()
	for name, s := range spec.Maps {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if err != nil {
			return nil, nil, false
		}
		ms[name] = m
		if s.Compatible(m) != nil {
			return nil, nil, false
		}
	}
	ids, err := mapIDs(ms)
	if err != nil {
		return nil, nil, false
	}
	idSet := map[ebpf.MapID]bool{}
	for _, id := range ids {
		idSet[id] = true
	}
	cgID, err := cgroupID(cg)
	if err != nil {
		return nil, nil, false
	}
	for _, h := range hooks {
		if !installedHook(dir, h, spec.Programs[h.prog], idSet, cgID) {
			return nil, nil, false
		}
	}
	return ms, ids, true
}

// installedHook reports whether h's pinned program has spec's code and uses
// only maps in ids, and h's pinned link runs it on the cgroup cgID.
func installedHook(dir string, h hook, spec *ebpf.ProgramSpec, ids map[ebpf.MapID]bool, cgID uint64) bool {
	prog, err := ebpf.LoadPinnedProgram(filepath.Join(dir, h.progPin), nil)
	if err != nil {
		return false
	}
	defer prog.Close()
	pi, err := prog.Info()
	if err != nil || spec.Compatible(pi) != nil {
		return false
	}
	progID, ok1 := pi.ID()
	used, ok2 := pi.MapIDs()
	if !ok1 || !ok2 {
		return false
	}
	for _, id := range used {
		if !ids[id] {
			return false
		}
	}
	l, err := link.LoadPinnedLink(filepath.Join(dir, h.linkPin), nil)
	if err != nil {
		return false
	}
	defer l.Close()
	li, err := l.Info()
	if err != nil {
		return false
	}
	ci := li.Cgroup()
	return ci != nil && ci.CgroupId == cgID && li.Program == progID
}

func closeMaps(ms map[string]*ebpf.Map) {
	for _, m := range ms {
		m.Close()
	}
}

// knownContents is what the set maps and the config held when this Backend
// last wrote or verified them, and which maps (kernel ids) those were.
type knownContents struct {
	ids map[string]ebpf.MapID
	c   contents
}

// mapIDs are the kernel ids of ms.
func mapIDs(ms map[string]*ebpf.Map) (map[string]ebpf.MapID, error) {
	ids := make(map[string]ebpf.MapID, len(ms))
	for name, m := range ms {
		info, err := m.Info()
		if err != nil {
			return nil, fmt.Errorf("map %s: %w", name, err)
		}
		id, ok := info.ID()
		if !ok {
			return nil, fmt.Errorf("map %s: the kernel tells no map id", name)
		}
		ids[name] = id
	}
	return ids, nil
}

// sync makes the maps ms (with kernel ids ids) hold want. It diffs want
// against b.known without reading the maps while b.known describes these
// maps and sg_writer still holds b's token: then one added uid is one
// element write, and reading 10,000 uids (a walk over every bucket of a
// 131,072-entry hash, ~5 ms) is left to Verify. Otherwise it reads them.
// Either way only the elements that differ are written.
func (b *Backend) sync(ms map[string]kmap, ids map[string]ebpf.MapID, want contents) error {
	known := b.known
	b.known = nil // unknown until the writes succeed
	owner, err := readWriter(ms[mapWriter])
	if err != nil {
		return err
	}
	var have *contents
	if known != nil && owner == b.token && maps.Equal(known.ids, ids) {
		have = &known.c
	}
	if owner != b.token {
		if err := writeWriter(ms[mapWriter], b.token); err != nil {
			return err
		}
	}
	if err := writeContents(ms, have, want); err != nil {
		return err
	}
	b.known = &knownContents{ids: ids, c: want}
	return nil
}

// claim puts b's token in sg_writer before b writes elements, forgetting
// what b knew when another writer's token was there.
func (b *Backend) claim(m kmap) error {
	owner, err := readWriter(m)
	if err != nil {
		return err
	}
	if owner == b.token {
		return nil
	}
	b.known = nil
	return writeWriter(m, b.token)
}

// learn records what Verify read: want, when the maps held exactly that
// (inSync) and b was their last writer; else b knows nothing, so that the
// Apply repairing a drift reads the maps.
func (b *Backend) learn(ms map[string]*ebpf.Map, kms map[string]kmap, inSync bool, want contents) {
	b.known = nil
	w, ok := kms[mapWriter]
	if !inSync || !ok {
		return
	}
	// Read after the contents: only b writes b's token, so if it is still
	// there no other writer started before the contents were read.
	if owner, err := readWriter(w); err != nil || owner != b.token {
		return
	}
	ids, err := mapIDs(ms)
	if err != nil {
		return
	}
	b.known = &knownContents{ids: ids, c: want}
}

func readWriter(m kmap) (uint64, error) {
	var v uint64
	if err := m.Lookup(uint32(0), &v); err != nil {
		return 0, fmt.Errorf("read map %s: %w", mapWriter, err)
	}
	return v, nil
}

func writeWriter(m kmap, token uint64) error {
	if err := m.Update(uint32(0), token, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("update map %s: %w", mapWriter, err)
	}
	return nil
}

// newToken is a random non-zero token (a new map holds 0).
func newToken() uint64 {
	var buf [8]byte
	for {
		rand.Read(buf[:])
		if t := binary.NativeEndian.Uint64(buf[:]); t != 0 {
			return t
		}
	}
}
