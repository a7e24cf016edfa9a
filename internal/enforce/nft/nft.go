//go:build linux

package nft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// Backend is the nftables enforce.Backend.
type Backend struct {
	logger   *slog.Logger
	netnsFD  int    // 0: the calling process's network namespace
	logGroup uint16 // the NFLOG group of the block rule and of Events
	owner    bool   // Config.Owner

	// Owner mode: one lasting connection, which owns the table. connMu is
	// held for each whole operation, so operations never interleave on it.
	connMu         sync.Mutex
	lasting        *nftables.Conn // nil before first use and after Close
	port           uint32         // lasting's netlink port id
	ownerProbed    bool           // ownerSupported is known
	ownerSupported bool           // the kernel takes NFT_TABLE_F_OWNER|NFT_TABLE_F_PERSIST
	owned          bool           // the table was last found or made ours

	mu    sync.Mutex // protects known
	known *knownState
}

// knownState is our table as the kernel held it at ruleset generation gen.
// nf_tables bumps the generation on every committed transaction, anyone's,
// so while it stays the same the table need not be read again: a daemon
// verifying or changing a table of 10,000 uids skips dumping them all.
type knownState struct {
	gen uint32
	st  *state // never modified once known
	// matches is a ruleset st was found or made to match, so verifying
	// that same ruleset again needs no comparison of 10,000 elements.
	matches *policy.Ruleset
}

// DefaultLogGroup is the netlink log (NFLOG) group blocked attempts are sent
// to. The daemon listens on it; 2525 is an otherwise unused number that reads
// as SMTP.
const DefaultLogGroup uint16 = 2525

// Config is everything an nft backend is built from.
type Config struct {
	Logger *slog.Logger // nil discards
	// NetNSFD, when not 0, makes the backend work in the network namespace
	// behind this fd, for tests that must not touch the host's namespace.
	NetNSFD int
	// Owner makes the backend own table inet smtpguard while it lives: it
	// keeps one netlink connection open from its first use until Close,
	// creates or adopts the table over it as owner, and does every Apply,
	// Verify and Remove over it. Meant for the daemon; a CLI process must
	// not own the table (it would exit at once, leaving it orphaned). Where
	// the kernel lacks owned persistent tables (before Linux 6.9) the
	// backend works as without it, and Owned reports false.
	Owner bool
	// LogGroup is the NFLOG group the block rule logs to and Events reads
	// (0: DefaultLogGroup).
	LogGroup uint16
}

// New returns an nft backend.
func New(cfg Config) *Backend {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LogGroup == 0 {
		cfg.LogGroup = DefaultLogGroup
	}
	return &Backend{
		logger:   logger.With("component", "nft", "backend", "nft"),
		netnsFD:  cfg.NetNSFD,
		owner:    cfg.Owner,
		logGroup: cfg.LogGroup,
	}
}

// Render prints the ruleset in nft syntax, loadable with "nft -f". It is part
// of enforce.Backend.
func (b *Backend) Render(rs policy.Ruleset) string { return render(rs, b.logGroup) }

// Name is part of enforce.Backend.
func (b *Backend) Name() string { return "nft" }

// conn returns the connection for one operation and what to call when the
// operation is done: a new connection, or in owner mode the lasting one,
// held exclusively until release.
func (b *Backend) conn(ctx context.Context) (c *nftables.Conn, release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if !b.owner {
		c, err := b.dial()
		if err != nil {
			return nil, nil, err
		}
		return c, func() { c.CloseLasting() }, nil
	}
	b.connMu.Lock()
	if c, err = b.ownerConn(); err != nil {
		b.connMu.Unlock()
		return nil, nil, err
	}
	return c, b.connMu.Unlock, nil
}

func (b *Backend) dial() (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if b.netnsFD != 0 {
		opts = append(opts, nftables.WithNetNSFd(b.netnsFD))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, classify(fmt.Errorf("open nftables netlink socket: %w", err))
	}
	return c, nil
}

// flush sends the pending batch as one transaction, unless ctx is already done
// (the library takes no context, so this is where we honour it).
func flush(ctx context.Context, c *nftables.Conn) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return classify(c.Flush())
}

// classify turns permission errors into advice.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%w (needs root or CAP_NET_ADMIN: run with sudo)", err)
	case errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.EAFNOSUPPORT), errors.Is(err, unix.EOPNOTSUPP):
		// EOPNOTSUPP: nfnetlink is there but its nf_tables subsystem is not.
		return fmt.Errorf("%w: %w: this kernel lacks nf_tables; load it with 'modprobe nf_tables' or boot a kernel built with CONFIG_NF_TABLES", err, enforce.ErrNotSupported)
	}
	return err
}

func table() *nftables.Table {
	return &nftables.Table{Name: tableName, Family: nftables.TableFamilyINet}
}

// Probe is part of enforce.Backend: it creates and deletes a scratch table in
// one transaction, which proves nf_tables and our privileges without leaving a
// trace.
func (b *Backend) Probe(ctx context.Context) error {
	c, release, err := b.conn(ctx)
	if err != nil {
		return err
	}
	defer release()
	t := &nftables.Table{Name: tableName + "_probe", Family: nftables.TableFamilyINet}
	c.AddTable(t)
	c.DelTable(t)
	if err := flush(ctx, c); err != nil {
		return fmt.Errorf("probe nftables with table inet %s: %w", t.Name, err)
	}
	return nil
}

// objects builds the kernel objects for rs.
func objects(rs policy.Ruleset) (t *nftables.Table, ports, uids *nftables.Set, chains map[string]*nftables.Chain) {
	t = table()
	ports = &nftables.Set{Table: t, Name: setPorts, KeyType: nftables.TypeInetService}
	uids = &nftables.Set{Table: t, Name: setUIDs, KeyType: nftables.TypeUID, KeyByteOrder: binaryutil.NativeEndian}
	chains = map[string]*nftables.Chain{}
	accept := nftables.ChainPolicyAccept
	for _, c := range chainsFor(rs) {
		ch := &nftables.Chain{Name: c.name, Table: t}
		if c.hook != nil {
			ch.Type, ch.Hooknum, ch.Priority, ch.Policy = c.typ, c.hook, c.priority, &accept
		}
		chains[c.name] = ch
	}
	return t, ports, uids, chains
}

// exceptionSets are the two concatenated interval sets for exceptions.
func exceptionSets(t *nftables.Table) (v4, v6 *nftables.Set) {
	mk := func(name string, addr nftables.SetDatatype) *nftables.Set {
		return &nftables.Set{Table: t, Name: name, Concatenation: true, Interval: true,
			KeyType: nftables.MustConcatSetType(nftables.TypeUID, addr, nftables.TypeInetService)}
	}
	return mk(setExc4, nftables.TypeIPAddr), mk(setExc6, nftables.TypeIP6Addr)
}

// desiredSets pairs every set with the elements rs wants in it.
func desiredSets(rs policy.Ruleset, ports, uids *nftables.Set) []desiredSet {
	exc4, exc6 := exceptionSets(ports.Table)
	e4, e6 := exceptionElements(rs.Exceptions)
	out := []desiredSet{
		{ports, portElements(rs.Ports)},
		{uids, uidElements(rs.UIDs)},
		{exc4, e4},
		{exc6, e6},
	}
	out = append(out, rateSets(rs, ports.Table)...)
	return append(out, desiredSet{dynamicSet(ports.Table, setAllowedCount), nil})
}

type desiredSet struct {
	def  *nftables.Set
	want []nftables.SetElement
}

// Apply is part of enforce.Backend. When the installed rules already match and
// only set contents differ it changes just those elements, so one allowed user
// costs one small transaction whatever the set size; otherwise it replaces the
// whole table in one transaction.
func (b *Backend) Apply(ctx context.Context, rs policy.Ruleset) error {
	start := time.Now()
	c, release, err := b.conn(ctx)
	if err != nil {
		return err
	}
	defer release()
	st, gen, err := b.readState(c)
	if err != nil {
		return fmt.Errorf("read table inet %s: %w", tableName, err)
	}
	port := b.myPort()
	if st.ownedByOther(port) {
		return fmt.Errorf("apply table inet %s: %w", tableName, errOwnedBy(st.owner))
	}
	b.forget() // whatever happens next changes the table or fails
	if st.structureMatches(rs, b.logGroup, port) {
		added, removed, err := b.applySets(ctx, c, st, gen, rs)
		if err == nil {
			b.setOwned(port != 0)
			b.logger.Debug("updated sets", "table", tableName, "added", added, "removed", removed, "took", time.Since(start))
			return nil
		}
		b.logger.Debug("incremental update failed, replacing table", "table", tableName, "err", err)
	}
	if err := b.replace(ctx, c, rs, st); err != nil {
		return fmt.Errorf("apply table inet %s: %w", tableName, b.ownedError(c, err))
	}
	b.setOwned(port != 0)
	b.logger.Debug("replaced table", "table", tableName, "ruleset", render(rs, b.logGroup), "took", time.Since(start))
	return nil
}

// applySets brings set contents to rs in one transaction. st was read at
// generation gen (0: unknown); when ours is the only transaction since, the
// result becomes the known state without reading it back.
func (b *Backend) applySets(ctx context.Context, c *nftables.Conn, st *state, gen uint32, rs policy.Ruleset) (added, removed int, err error) {
	_, ports, uids, _ := objects(rs)
	after := *st
	after.sets = maps.Clone(st.sets)
	for _, ds := range desiredSets(rs, ports, uids) {
		if ds.def.Dynamic {
			continue // the packet path's, not ours
		}
		have := st.sets[ds.def.Name]
		add, del := diff(have, ds.want)
		if err := c.SetDeleteElements(ds.def, del); err != nil {
			return 0, 0, err
		}
		if err := c.SetAddElements(ds.def, add); err != nil {
			return 0, 0, err
		}
		added, removed = added+len(add), removed+len(del)
		if len(add)+len(del) > 0 {
			after.sets[ds.def.Name] = append(without(have, del), add...)
		}
	}
	if added+removed == 0 {
		b.remember(gen, st)
		b.matched(gen, rs)
		return 0, 0, nil
	}
	if err := flush(ctx, c); err != nil {
		return 0, 0, err
	}
	if gen != 0 {
		if now, err := c.GetGen(); err == nil && now.ID == gen+1 {
			b.remember(now.ID, &after)
			b.matched(now.ID, rs)
		}
	}
	return added, removed, nil
}

// without returns els minus those whose keys are in drop.
func without(els, drop []nftables.SetElement) []nftables.SetElement {
	if len(drop) == 0 {
		return slices.Clone(els)
	}
	dropped := make(map[string]bool, len(drop))
	for _, e := range drop {
		dropped[elementKey(e)] = true
	}
	out := make([]nftables.SetElement, 0, len(els))
	for _, e := range els {
		if !dropped[elementKey(e)] {
			out = append(out, e)
		}
	}
	return out
}

// readState returns our table as the kernel holds it, and the ruleset
// generation it is valid for (0 when another transaction raced the read).
func (b *Backend) readState(c *nftables.Conn) (*state, uint32, error) {
	before, err := c.GetGen()
	if err != nil {
		st, err := readState(c, b.netnsFD)
		return st, 0, err
	}
	b.mu.Lock()
	known := b.known
	b.mu.Unlock()
	if known != nil && known.gen == before.ID {
		return known.st, known.gen, nil
	}
	st, err := readState(c, b.netnsFD)
	if err != nil {
		return nil, 0, err
	}
	if after, err := c.GetGen(); err == nil && after.ID == before.ID {
		b.remember(before.ID, st)
		return st, before.ID, nil
	}
	return st, 0, nil
}

func (b *Backend) remember(gen uint32, st *state) {
	if gen == 0 {
		return
	}
	b.mu.Lock()
	b.known = &knownState{gen: gen, st: st}
	b.mu.Unlock()
}

// matched records that the known state at gen matches rs.
func (b *Backend) matched(gen uint32, rs policy.Ruleset) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.known != nil && b.known.gen == gen && gen != 0 {
		c := rs.Clone()
		b.known.matches = &c
	}
}

// knownMatch reports whether the kernel is still at the generation where our
// table was found or made to match rs.
func (b *Backend) knownMatch(gen uint32, rs policy.Ruleset) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.known != nil && b.known.gen == gen && b.known.matches != nil && b.known.matches.Equal(rs)
}

func (b *Backend) forget() {
	b.mu.Lock()
	b.known = nil
	b.mu.Unlock()
}

// replace rebuilds the table in one transaction. "add table; delete table; add
// table" makes the delete valid whether or not the table existed, and the
// kernel applies the batch atomically: packets see the old rules or the new.
//
// The first "add table" repeats the flags the table has (a no-op on any table
// we may write; changing an orphaned persistent table's flags is EOPNOTSUPP),
// the last creates it with ours: owned and persistent in owner mode.
func (b *Backend) replace(ctx context.Context, c *nftables.Conn, rs policy.Ruleset, st *state) error {
	t, ports, uids, chains := objects(rs)
	t.Flags = b.wantFlags()
	first := table()
	first.Flags = t.Flags
	if st.present {
		first.Flags = st.flags
	}
	c.AddTable(first)
	c.DelTable(table())
	c.AddTable(t)
	for _, ds := range desiredSets(rs, ports, uids) {
		if err := c.AddSet(ds.def, ds.want); err != nil {
			return fmt.Errorf("set %s: %w", ds.def.Name, err)
		}
	}
	// Regular chains first: the base chain's rule jumps to them.
	specs := chainsFor(rs)
	for i := len(specs) - 1; i >= 0; i-- {
		c.AddChain(chains[specs[i].name])
	}
	for _, r := range rules(rs, b.logGroup, ports, uids) {
		c.AddRule(&nftables.Rule{
			Table:    t,
			Chain:    chains[r.chain],
			Exprs:    r.exprs,
			UserData: r.userData(),
		})
	}
	return flush(ctx, c)
}

// Remove is part of enforce.Backend. It deletes only table inet smtpguard.
func (b *Backend) Remove(ctx context.Context) error {
	c, release, err := b.conn(ctx)
	if err != nil {
		return err
	}
	defer release()
	b.forget()
	c.DelTable(table())
	if err := flush(ctx, c); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete table inet %s: %w", tableName, b.ownedError(c, err))
	}
	b.setOwned(false)
	return nil
}

// Verify is part of enforce.Backend.
func (b *Backend) Verify(ctx context.Context, rs policy.Ruleset) (enforce.Drift, error) {
	c, release, err := b.conn(ctx)
	if err != nil {
		return enforce.Drift{}, err
	}
	defer release()
	st, gen, err := b.readState(c)
	if err != nil {
		return enforce.Drift{}, fmt.Errorf("read table inet %s: %w", tableName, err)
	}
	if b.knownMatch(gen, rs) {
		return enforce.Drift{}, nil
	}
	port := b.myPort()
	problems := st.problems(rs, b.logGroup, port)
	if len(problems) == 0 {
		b.matched(gen, rs)
	}
	b.setOwned(port != 0 && st.ownedBy(port))
	return enforce.Drift{Problems: problems}, nil
}

// state is what the kernel holds of our table.
type state struct {
	present bool
	flags   nftables.TableFlags
	owner   uint32 // netlink port of the owning socket, when flags has TableFlagOwner
	dormant bool   // table flag that switches every base chain off
	chains  map[string]*nftables.Chain
	rules   map[string][]kernelRule // per chain, in order
	sets    map[string][]nftables.SetElement
	setDefs map[string]*nftables.Set
}

func readState(c *nftables.Conn, netnsFD int) (*state, error) {
	st := &state{
		chains:  map[string]*nftables.Chain{},
		rules:   map[string][]kernelRule{},
		sets:    map[string][]nftables.SetElement{},
		setDefs: map[string]*nftables.Set{},
	}
	t, err := c.ListTableOfFamily(tableName, nftables.TableFamilyINet)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return st, nil
		}
		return nil, classify(err)
	}
	st.present = true
	st.dormant = tableDormant(t)
	st.flags, st.owner = t.Flags, t.Owner
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, classify(err)
	}
	for _, ch := range chains {
		if ch.Table.Name != tableName {
			continue
		}
		st.chains[ch.Name] = ch
		rs, err := dumpRules(netnsFD, ch.Name)
		if err != nil {
			return nil, fmt.Errorf("list rules of chain %s: %w", ch.Name, err)
		}
		st.rules[ch.Name] = rs
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		st.setDefs[s.Name] = s
		if s.Dynamic {
			continue // buckets and counters: the packet path's, never compared
		}
		els, err := c.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("list elements of set %s: %w", s.Name, err)
		}
		st.sets[s.Name] = els
	}
	return st, nil
}

// structureMatches reports whether everything but set contents is as desired
// (port: the netlink port that must own the table, 0 for any or none).
func (st *state) structureMatches(rs policy.Ruleset, group uint16, port uint32) bool {
	_, structural := st.compare(rs, group, false, port) // set contents are not structure
	return st.present && structural == 0
}

func (st *state) problems(rs policy.Ruleset, group uint16, port uint32) []string {
	out, _ := st.compare(rs, group, true, port)
	return out
}

// compare lists every difference, and counts those that are not mere set
// contents (which an incremental update can fix). Set contents are compared
// only when elements is set: at 10,000 uids that is most of the work.
func (st *state) compare(rs policy.Ruleset, group uint16, elements bool, port uint32) (out []string, structural int) {
	if !st.present {
		return []string{fmt.Sprintf("table inet %s is missing", tableName)}, 1
	}
	defer func() { slices.Sort(out) }()
	problem := func(format string, args ...any) {
		out = append(out, fmt.Sprintf(format, args...))
		structural++
	}
	if st.dormant {
		problem("table inet %s is dormant: its chains see no packets", tableName)
	}
	switch {
	case port == 0:
	case st.flags&nftables.TableFlagOwner == 0:
		problem("table inet %s has no owner: anyone can flush it", tableName)
	case st.owner != port:
		problem("table inet %s is owned by another process (netlink port %d)", tableName, st.owner)
	}
	_, ports, uids, chains := objects(rs)
	want := map[string][]ruleSpec{}
	for _, r := range rules(rs, group, ports, uids) {
		want[r.chain] = append(want[r.chain], r)
	}
	var names []string
	for _, c := range chainsFor(rs) {
		names = append(names, c.name)
	}
	for _, name := range names {
		got, ok := st.chains[name]
		if !ok {
			problem("chain %s is missing", name)
			continue
		}
		if p := chainDiffers(got, chains[name]); p != "" {
			problem("chain %s: %s", name, p)
		}
		if p := rulesDiffer(st.rules[name], want[name]); p != "" {
			problem("chain %s: rules differ: %s", name, p)
		}
	}
	for name := range st.chains {
		if !slices.Contains(names, name) {
			problem("unexpected chain %s", name)
		}
	}
	desired := desiredSets(rs, ports, uids)
	for _, ds := range desired {
		got, ok := st.setDefs[ds.def.Name]
		if !ok {
			problem("set %s is missing", ds.def.Name)
			continue
		}
		if got.KeyType.Name != ds.def.KeyType.Name || got.Interval != ds.def.Interval || got.IsMap {
			problem("set %s has the wrong type %s", ds.def.Name, got.KeyType.Name)
			continue
		}
		if got.Dynamic != ds.def.Dynamic {
			problem("set %s: flags dynamic %s", ds.def.Name, map[bool]string{true: "expected", false: "unexpected"}[ds.def.Dynamic])
			continue
		}
		if !elements || ds.def.Dynamic {
			continue
		}
		add, del := diff(st.sets[ds.def.Name], ds.want)
		if len(add)+len(del) > 0 {
			out = append(out, fmt.Sprintf("set %s: %d element(s) missing, %d unexpected", ds.def.Name, len(add), len(del)))
		}
	}
	for name := range st.setDefs {
		if !slices.ContainsFunc(desired, func(ds desiredSet) bool { return ds.def.Name == name }) {
			problem("unexpected set %s", name)
		}
	}
	return out, structural
}

func chainDiffers(got, want *nftables.Chain) string {
	if (got.Hooknum == nil) != (want.Hooknum == nil) {
		return "base chain expected"
	}
	if want.Hooknum == nil {
		return ""
	}
	switch {
	case *got.Hooknum != *want.Hooknum:
		return "wrong hook"
	case got.Priority == nil || *got.Priority != *want.Priority:
		return "wrong priority"
	case got.Type != want.Type:
		return "wrong type"
	case got.Policy == nil || *got.Policy != *want.Policy:
		return "wrong policy"
	}
	return ""
}

// rulesDiffer describes how the kernel's rules of a chain differ from want,
// expression by expression, or returns "".
func rulesDiffer(got []kernelRule, want []ruleSpec) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d rules, want %d", len(got), len(want))
	}
	var bad []string
	for i, r := range want {
		w, err := wantRule(r)
		if err != nil {
			return err.Error() // our own rule does not marshal: a bug, never in sync
		}
		if !got[i].equal(w) {
			bad = append(bad, fmt.Sprintf("rule %d is not %q", i+1, r.text))
		}
	}
	return strings.Join(bad, ", ")
}

// elementKey identifies a set element by its key and, for intervals, its end.
func elementKey(e nftables.SetElement) string { return string(e.Key) + "\x00" + string(e.KeyEnd) }

// diff returns the elements to add to and delete from have to make it want.
// Interval elements of concatenated sets are identified by both ends.
func diff(have, want []nftables.SetElement) (add, del []nftables.SetElement) {
	haveKeys := make(map[string]bool, len(have))
	for _, e := range have {
		haveKeys[elementKey(e)] = true
	}
	wantKeys := make(map[string]bool, len(want))
	for _, e := range want {
		wantKeys[elementKey(e)] = true
		if !haveKeys[elementKey(e)] {
			add = append(add, e)
		}
	}
	for _, e := range have {
		if !wantKeys[elementKey(e)] {
			del = append(del, nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd})
		}
	}
	return add, del
}

var _ enforce.Backend = (*Backend)(nil)
