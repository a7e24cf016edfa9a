//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/cilium/ebpf"
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
		out, err := batchRead(m, true)
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
		entries, err := batchRead(m, false)
		if !errors.Is(err, ebpf.ErrNotSupported) {
			if err != nil {
				return nil, err
			}
			out := make(map[string]bool, len(entries))
			for k := range entries {
				out[k] = true
			}
			return out, nil
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

// batchRead reads m with BPF_MAP_LOOKUP_BATCH; values only when
// withValues (they are read anyway, and dropped). It returns an error
// wrapping ebpf.ErrNotSupported when the kernel has no batch lookup.
func batchRead(m kmap, withValues bool) (map[string]string, error) {
	byteT := reflect.TypeFor[byte]()
	n := min(batchSize, int(m.MaxEntries()))
	keys := reflect.MakeSlice(reflect.SliceOf(reflect.ArrayOf(int(m.KeySize()), byteT)), n, n)
	vals := reflect.MakeSlice(reflect.SliceOf(reflect.ArrayOf(int(m.ValueSize()), byteT)), n, n)
	out := map[string]string{}
	var cursor ebpf.MapBatchCursor
	// Each full batch returns n elements, so the map's capacity bounds the
	// calls; a hash map being changed meanwhile may repeat a few.
	for range int(m.MaxEntries())/n + 3 {
		got, err := m.BatchLookup(&cursor, keys.Interface(), vals.Interface(), nil)
		for i := range got {
			v := ""
			if withValues {
				v = string(vals.Index(i).Bytes())
			}
			out[string(keys.Index(i).Bytes())] = v
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("batch lookup did not end after %d entries", len(out))
}
