//go:build linux

package bpf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"

	"github.com/smtpguard/smtpguard/internal/enforce"
)

var _ enforce.AllowedCounter = (*Backend)(nil)

// AllowedConnections is part of enforce.AllowedCounter: per uid, the
// connections to restricted ports the programs let through because the uid
// is allowed or has an exception (within its rate limit), since the maps
// were created. Local destinations under allow-local and connections let
// through by log mode are not counted. Without pins it returns an error
// wrapping ErrNotInstalled.
func (b *Backend) AllowedConnections(ctx context.Context) (map[uint32]uint64, error) {
	path := filepath.Join(b.PinDir(), mapAllowed)
	m, err := ebpf.LoadPinnedMap(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no allowed-connection counters pinned at %s: %w", path, ErrNotInstalled)
	}
	if err != nil {
		return nil, fmt.Errorf("open allowed-connection counters %s: %w", path, err)
	}
	defer m.Close()
	out := map[uint32]uint64{}
	var uid uint32
	var n uint64
	it := m.Iterate()
	for it.Next(&uid, &n) {
		out[uid] = n
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read allowed-connection counters %s: %w", path, err)
	}
	return out, nil
}

// readRates reads sg_rates into c, or lists it in missing.
func readRates(ms map[string]kmap, c *contents, missing *[]string) error {
	m, ok := ms[mapRates]
	if !ok {
		*missing = append(*missing, mapRates)
		c.rates = nil
		return nil
	}
	rates, err := readEntries(m)
	if err != nil {
		return fmt.Errorf("read map %s: %w", mapRates, err)
	}
	c.rates = rates
	return nil
}

// syncRatesTighten writes new and changed limits (a change starts the
// uid's bucket afresh: its state was counted in the old interval), before
// anything is allowed that they limit.
func syncRatesTighten(ms map[string]kmap, have, want map[string]string) error {
	for _, k := range sortedKeys(want) {
		old, ok := have[k]
		if ok && old == want[k] {
			continue
		}
		if err := ms[mapRates].Update([]byte(k), []byte(want[k]), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("update map %s: set %s: %w", mapRates, describeUID([]byte(k)), err)
		}
		if ok {
			if err := deleteKey(ms[mapBuckets], k); err != nil {
				return fmt.Errorf("update map %s: reset %s: %w", mapBuckets, describeUID([]byte(k)), err)
			}
		}
	}
	return nil
}

// syncRatesLoosen deletes the limits no longer wanted, after what they
// limited is no longer allowed, and the buckets of uids without a limit.
func syncRatesLoosen(ms map[string]kmap, have, want map[string]string) error {
	for _, k := range sortedKeys(have) {
		if _, ok := want[k]; ok {
			continue
		}
		if err := deleteKey(ms[mapRates], k); err != nil {
			return fmt.Errorf("update map %s: delete %s: %w", mapRates, describeUID([]byte(k)), err)
		}
	}
	buckets, err := readSet(ms[mapBuckets])
	if err != nil {
		return fmt.Errorf("read map %s: %w", mapBuckets, err)
	}
	for _, k := range staleBuckets(buckets, want) {
		if err := deleteKey(ms[mapBuckets], k); err != nil {
			return fmt.Errorf("update map %s: delete %s: %w", mapBuckets, describeUID([]byte(k)), err)
		}
	}
	return nil
}

func deleteKey(m kmap, k string) error {
	if err := m.Delete([]byte(k)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

// bucketProblems names buckets of uids without a rate limit: a program
// that read a limit just before Apply removed it can leave one behind.
// They limit nothing, and the next Apply deletes them.
func bucketProblems(ms map[string]kmap, want contents) ([]string, error) {
	m, ok := ms[mapBuckets]
	if !ok || want.rates == nil {
		return nil, nil
	}
	buckets, err := readSet(m)
	if err != nil {
		return nil, fmt.Errorf("read map %s: %w", mapBuckets, err)
	}
	var out []string
	for _, k := range staleBuckets(buckets, want.rates) {
		out = append(out, fmt.Sprintf("%s has a bucket of %s, which has no rate limit", mapBuckets, describeUID([]byte(k))))
	}
	return out, nil
}
