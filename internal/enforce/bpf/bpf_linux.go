//go:build linux

package bpf

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// Pins of the programs and links, beside the maps (pinned by map name).
const (
	pinProg4 = "prog_" + progConnect4
	pinProg6 = "prog_" + progConnect6
	pinLink4 = "link_" + progConnect4
	pinLink6 = "link_" + progConnect6
)

// hook is one of the two attachments.
type hook struct {
	family  int
	prog    string // program name
	attach  ebpf.AttachType
	progPin string
	linkPin string
}

var hooks = []hook{
	{4, progConnect4, ebpf.AttachCGroupInet4Connect, pinProg4, pinLink4},
	{6, progConnect6, ebpf.AttachCGroupInet6Connect, pinProg6, pinLink6},
}

// Backend enforces through cgroup/connect programs. Its methods are safe for
// concurrent use; changes are serialised.
type Backend struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex // serialises changes to the kernel objects

	// wrapMap, when set (by tests), wraps each map the sync code opens, to
	// count its operations.
	wrapMap func(name string, m kmap) kmap
	// token is this Backend's mark in sg_writer (mapsync.go), never 0.
	token uint64
	// known is what this Backend last wrote to (or verified in) the set
	// maps and the config, for Apply to diff against without reading them;
	// nil when unknown.
	known *knownContents
}

var _ enforce.Backend = (*Backend)(nil)

// New returns the backend for cfg. It touches nothing: Probe and Apply do.
func New(cfg Config) *Backend {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BPFFS == "" {
		cfg.BPFFS = DefaultBPFFS
	}
	if cfg.RingSize == 0 {
		cfg.RingSize = DefaultRingSize
	}
	if cfg.LocalAddrs == nil {
		cfg.LocalAddrs = InterfaceAddrs
	}
	return &Backend{cfg: cfg, log: cfg.Logger, token: newToken()}
}

// Name is part of enforce.Backend.
func (b *Backend) Name() string { return Name }

// PinDir is where every pin lives: BPFFS/smtpguard.
func (b *Backend) PinDir() string { return filepath.Join(b.cfg.BPFFS, PinDirName) }

// CgroupPath is the cgroup the programs attach to (the configured one, or
// the cgroup2 root).
func (b *Backend) CgroupPath() (string, error) {
	if b.cfg.CgroupPath != "" {
		return b.cfg.CgroupPath, nil
	}
	return Cgroup2Mount()
}

// Facts describes the backend on this kernel (the refusal's errno depends on
// bpf_set_retval, which only root can probe: other callers are told EPERM).
func (b *Backend) Facts() Facts {
	f := Facts{
		Covers:              slices.Clone(Covers),
		CannotStop:          slices.Clone(Limitations),
		Refusal:             RefusalEPERM,
		RefusalErrno:        "EPERM",
		ChangeNotifications: false,
		EventFields:         []string{"Time", "UID", "HasUID", "Family", "Dst", "DstPort", "Action", "PID", "TGID", "GID", "Comm", "NetnsCookie", "SocketCookie"},
	}
	if haveSetRetval() {
		f.Refusal, f.RefusalErrno = RefusalConnRefused, "ECONNREFUSED"
	}
	return f
}

// InterfaceAddrs lists the addresses of the interfaces in the caller's
// network namespace, as host prefixes (/32, /128).
func InterfaceAddrs() ([]netip.Prefix, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list this host's addresses: %w", err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}

func haveSetRetval() bool {
	return features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnSetRetval) == nil
}

// haveNsPid: bpf_get_ns_current_pid_tgid is allowed in cgroup/connect
// programs (every program type since Linux 6.10, tracing only before).
func haveNsPid() bool {
	return features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnGetNsCurrentPidTgid) == nil
}

// collectionSpec is both programs and every map. pinned maps are found by
// name under the pin directory (and pinned there when created).
func (b *Backend) collectionSpec(pinned bool) *ebpf.CollectionSpec {
	opts := progOptions{setRetval: haveSetRetval(), nsPid: haveNsPid()}
	maps := mapSpecs(b.cfg.RingSize)
	if pinned {
		for _, m := range maps {
			m.Pinning = ebpf.PinByName
		}
	}
	return &ebpf.CollectionSpec{
		Maps: maps,
		Programs: map[string]*ebpf.ProgramSpec{
			progConnect4: connectProgram(4, opts),
			progConnect6: connectProgram(6, opts),
		},
	}
}

// load creates (or, pinned, opens) the maps and loads both programs.
func (b *Backend) load(pinned bool) (*ebpf.Collection, *ebpf.CollectionSpec, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, nil, fmt.Errorf("raise the locked-memory limit for bpf maps: %w", err)
	}
	spec := b.collectionSpec(pinned)
	var opts ebpf.CollectionOptions
	if pinned {
		opts.Maps.PinPath = b.PinDir()
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, opts)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			b.log.Debug("bpf verifier rejected smtpguard's programs", "log", fmt.Sprintf("%+v", ve))
			return nil, nil, fmt.Errorf("the kernel's bpf verifier rejected the programs (run with debug logging for its log): %w", err)
		}
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, nil, fmt.Errorf("maps pinned under %s do not match this version of smtpguard: run 'smtpguard disable' and enable again: %w", b.PinDir(), err)
		}
		return nil, nil, fmt.Errorf("load bpf programs and maps: %w", err)
	}
	return coll, spec, nil
}

// Probe is part of enforce.Backend: it loads and verifies the programs with
// unpinned maps and attaches them to a throwaway child of the configured
// cgroup, then detaches and removes it. Nothing of ours stays behind.
func (b *Backend) Probe(ctx context.Context) error {
	if err := b.checkBPFFS(false); err != nil {
		return fmt.Errorf("%w: %v", enforce.ErrNotSupported, err)
	}
	cg, err := b.CgroupPath()
	if err != nil {
		return fmt.Errorf("%w: %v", enforce.ErrNotSupported, err)
	}
	if err := checkCgroup2(cg); err != nil {
		return fmt.Errorf("%w: %v", enforce.ErrNotSupported, err)
	}
	coll, _, err := b.load(false)
	if err != nil {
		return fmt.Errorf("%w: %v", enforce.ErrNotSupported, err)
	}
	defer coll.Close()
	child := filepath.Join(cg, "smtpguard-probe-"+randomHex(4))
	if err := os.Mkdir(child, 0o700); err != nil {
		return fmt.Errorf("%w: create probe cgroup: %v", enforce.ErrNotSupported, err)
	}
	defer os.Remove(child)
	for _, h := range hooks {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: child, Attach: h.attach, Program: coll.Programs[h.prog]})
		if err != nil {
			return fmt.Errorf("%w: attach %s to a probe cgroup: %v", enforce.ErrNotSupported, h.prog, err)
		}
		if _, ok := l.(interface{ FD() int }); !ok {
			l.Close()
			return fmt.Errorf("%w: this kernel lacks bpf_link for cgroups, so enforcement could not outlive the daemon", enforce.ErrNotSupported)
		}
		l.Close()
	}
	return nil
}

// checkBPFFS makes sure BPFFS is a bpf filesystem, mounting one when allowed
// and mount is set.
func (b *Backend) checkBPFFS(mount bool) error {
	var st unix.Statfs_t
	if err := unix.Statfs(b.cfg.BPFFS, &st); err != nil {
		return fmt.Errorf("bpf filesystem %s: %w", b.cfg.BPFFS, err)
	}
	if st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if !b.cfg.MountBPFFS {
		return fmt.Errorf("%s is not a bpf filesystem: mount one (mount -t bpf bpf %s) or let smtpguard mount it", b.cfg.BPFFS, b.cfg.BPFFS)
	}
	if !mount {
		return nil // Apply will mount it
	}
	entries, err := os.ReadDir(b.cfg.BPFFS)
	if err != nil {
		return fmt.Errorf("bpf filesystem %s: %w", b.cfg.BPFFS, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s is not a bpf filesystem and not empty: refusing to mount over it", b.cfg.BPFFS)
	}
	if err := unix.Mount("bpf", b.cfg.BPFFS, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount a bpf filesystem at %s: %w", b.cfg.BPFFS, err)
	}
	b.log.Info("mounted a bpf filesystem", "path", b.cfg.BPFFS)
	return nil
}

// Apply is part of enforce.Backend. Maps are created and pinned the first
// time, then only their elements change; the programs are attached (and
// their links pinned) once, and re-attached when a link was detached or the
// configured cgroup changed. While everything is in place (openInstalled)
// nothing is loaded: Apply writes the elements that differ and nothing
// else, diffing against what b last wrote or verified unless another writer
// came since (sync). An element changed from outside smtpguard is found by
// Verify, after which Apply reads the maps again. After an error the maps
// hold what they held before.
func (b *Backend) Apply(ctx context.Context, rs policy.Ruleset) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.checkBPFFS(true); err != nil {
		return err
	}
	cg, err := b.cgroupFor(rs)
	if err != nil {
		return err
	}
	if err := checkCgroup2(cg); err != nil {
		return err
	}
	local, err := b.cfg.LocalAddrs()
	if err != nil {
		return err
	}
	want, err := encode(rs, local)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(b.PinDir(), 0o700); err != nil {
		return fmt.Errorf("create pin directory: %w", err)
	}
	if err := b.dropIncompatibleRing(); err != nil {
		return err
	}
	if ms, ids, ok := b.openInstalled(cg); ok {
		defer closeMaps(ms)
		// The responder's port first: a change of mode to explain in
		// sync's config write then finds it in place.
		undo, err := writeExplainPort(ms, rs)
		if err != nil {
			return err
		}
		if err := b.sync(b.kmaps(ms), ids, want); err != nil {
			return errors.Join(err, undo())
		}
		return nil
	}
	coll, spec, err := b.load(true)
	if err != nil {
		return err
	}
	defer coll.Close()
	undo, err := writeExplainPort(coll.Maps, rs)
	if err != nil {
		return err
	}
	ids, err := mapIDs(coll.Maps)
	if err != nil {
		return errors.Join(err, undo())
	}
	if err := b.sync(b.kmaps(coll.Maps), ids, want); err != nil {
		return errors.Join(err, undo())
	}
	for _, h := range hooks {
		if err := b.ensureAttached(h, coll, spec, cg); err != nil {
			return err
		}
	}
	return nil
}

// dropIncompatibleRing unpins a ring buffer of another size than configured:
// it holds no state, the programs keep the old one until the new ones
// replace them, and event readers notice the new pin and reopen.
func (b *Backend) dropIncompatibleRing() error {
	path := filepath.Join(b.PinDir(), mapEvents)
	m, err := ebpf.LoadPinnedMap(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open pinned ring buffer %s: %w", path, err)
	}
	defer m.Close()
	if mapSpecs(b.cfg.RingSize)[mapEvents].Compatible(m) == nil {
		return nil
	}
	b.log.Info("replacing the event ring buffer with one of the configured size", "bytes", b.cfg.RingSize)
	return m.Unpin()
}

// RefreshLocal rewrites only the local address maps from Config.LocalAddrs,
// for the daemon to call on address changes (netlink). Without pins it does
// nothing: Apply will list the addresses.
func (b *Backend) RefreshLocal(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	local, err := b.cfg.LocalAddrs()
	if err != nil {
		return err
	}
	want := newContents()
	for _, p := range append(alwaysLocal(), local...) {
		k, m := localKey(p)
		want.sets[m][string(k)] = true
	}
	ms := map[string]*ebpf.Map{}
	defer closeMaps(ms)
	for _, name := range []string{mapWriter, mapLocal4, mapLocal6} {
		m, err := ebpf.LoadPinnedMap(filepath.Join(b.PinDir(), name), nil)
		if errors.Is(err, os.ErrNotExist) {
			if name == mapWriter { // pins of an older version: Apply adds it
				continue
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("open pinned map %s: %w", name, err)
		}
		ms[name] = m
	}
	kms := b.kmaps(ms)
	if w, ok := kms[mapWriter]; ok {
		if err := b.claim(w); err != nil {
			return err
		}
	} else {
		b.known = nil
	}
	for _, name := range []string{mapLocal4, mapLocal6} {
		have, err := readSet(kms[name])
		if err == nil {
			add, del := diffSets(have, want.sets[name])
			err = writeDiff(kms[name], add, del)
		}
		if err != nil {
			b.known = nil
			return fmt.Errorf("update %s: %w", name, err)
		}
		if b.known != nil {
			b.known.c.sets[name] = want.sets[name]
		}
	}
	return nil
}

// ensureAttached makes h's pinned link run h's program on cgroup cg.
func (b *Backend) ensureAttached(h hook, coll *ebpf.Collection, spec *ebpf.CollectionSpec, cg string) error {
	cgID, err := cgroupID(cg)
	if err != nil {
		return err
	}
	prog, err := b.currentProgram(h, coll, spec)
	if err != nil {
		return err
	}
	defer prog.Close()
	progInfo, err := prog.Info()
	if err != nil {
		return fmt.Errorf("program %s: %w", h.prog, err)
	}
	progID, _ := progInfo.ID()
	linkPath := filepath.Join(b.PinDir(), h.linkPin)
	old, err := link.LoadPinnedLink(linkPath, nil)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		b.log.Warn("pinned bpf link unusable; attaching a new one", "pin", linkPath, "err", err)
	default:
		defer old.Close()
		info, err := old.Info()
		if err == nil && info.Cgroup() != nil && info.Cgroup().CgroupId == cgID {
			if info.Program == progID {
				return nil
			}
			if err := old.Update(prog); err != nil {
				return fmt.Errorf("update link %s to the new program: %w", linkPath, err)
			}
			return nil
		}
		b.log.Warn("bpf link detached or on another cgroup; attaching again", "pin", linkPath, "cgroup", cg)
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: h.attach, Program: prog})
	if err != nil {
		return fmt.Errorf("attach %s to cgroup %s: %w", h.prog, cg, err)
	}
	defer l.Close()
	// Replace the pin in one rename: the old link (if any) loses its last
	// reference when we close it, and detaches only after the new one runs.
	if err := replacePin(linkPath, l.Pin); err != nil {
		return fmt.Errorf("pin link %s: %w", linkPath, err)
	}
	return nil
}

// currentProgram is the pinned program when it is this version's code using
// this collection's maps, else the collection's, pinned in its place. The
// caller closes it.
func (b *Backend) currentProgram(h hook, coll *ebpf.Collection, spec *ebpf.CollectionSpec) (*ebpf.Program, error) {
	path := filepath.Join(b.PinDir(), h.progPin)
	fresh := coll.Programs[h.prog]
	if pinned, err := ebpf.LoadPinnedProgram(path, nil); err == nil {
		if sameProgram(pinned, fresh, spec.Programs[h.prog]) {
			return pinned, nil
		}
		pinned.Close()
	}
	p, err := fresh.Clone()
	if err != nil {
		return nil, err
	}
	if err := replacePin(path, p.Pin); err != nil {
		p.Close()
		return nil, fmt.Errorf("pin program %s: %w", path, err)
	}
	return p, nil
}

// sameProgram reports whether pinned has spec's code and fresh's maps.
func sameProgram(pinned, fresh *ebpf.Program, spec *ebpf.ProgramSpec) bool {
	pi, err := pinned.Info()
	if err != nil || spec.Compatible(pi) != nil {
		return false
	}
	fi, err := fresh.Info()
	if err != nil {
		return false
	}
	pm, ok1 := pi.MapIDs()
	fm, ok2 := fi.MapIDs()
	if !ok1 || !ok2 {
		return false
	}
	slices.Sort(pm)
	slices.Sort(fm)
	return slices.Equal(pm, fm)
}

// replacePin pins an object at a temporary name beside path, then renames it
// over path, so path always names a working object.
func replacePin(path string, pin func(string) error) error {
	tmp := path + "_new_" + randomHex(4) // bpffs refuses names with dots
	if err := pin(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// Remove is part of enforce.Backend: it detaches both links and removes
// every pin. What is missing is skipped.
func (b *Backend) Remove(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.known = nil
	dir := b.PinDir()
	// Nothing pinned is nothing to remove, and is told by the file system
	// alone: a process without CAP_BPF (the nft-only service's sandbox)
	// gets EPERM from every bpf() call, even for a pin that is not there.
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var errs []error
	for _, h := range hooks {
		path := filepath.Join(dir, h.linkPin)
		if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
			continue
		}
		l, err := link.LoadPinnedLink(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("open pinned link %s: %w", path, err))
			continue
		}
		// Detach even if someone else holds the link open.
		if err := l.Detach(); err != nil && !errors.Is(err, link.ErrNotSupported) {
			b.log.Debug("detach bpf link", "pin", path, "err", err)
		}
		if err := l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin %s: %w", path, err))
		}
		l.Close()
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return errors.Join(errs...)
	}
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("read pin directory: %w", err))...)
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin %s: %w", filepath.Join(dir, e.Name()), err))
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove pin directory: %w", err))
	}
	return errors.Join(errs...)
}

// Present is part of enforce.Backend: whether anything is pinned under the
// pin directory.
func (b *Backend) Present(ctx context.Context) (bool, error) {
	entries, err := os.ReadDir(b.PinDir())
	if errors.Is(err, os.ErrNotExist) {
		if !b.cfg.MountBPFFS {
			if err := b.checkBPFFS(false); err != nil {
				return false, fmt.Errorf("%w: %v", enforce.ErrNotSupported, err)
			}
		}
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read pin directory: %w", err)
	}
	return len(entries) > 0, nil
}

// Verify is part of enforce.Backend: the pins, that each link runs our
// program on the configured cgroup (as the kernel's own list of the
// cgroup's programs says), and every map element.
func (b *Backend) Verify(ctx context.Context, rs policy.Ruleset) (enforce.Drift, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var d enforce.Drift
	dir := b.PinDir()
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		d.Problems = append(d.Problems, fmt.Sprintf("nothing is pinned under %s: the bpf programs are not installed", dir))
		return d, nil
	}
	cg, err := b.cgroupFor(rs)
	if err != nil {
		return d, err
	}
	cgID, err := cgroupID(cg)
	if err != nil {
		return d, err
	}
	spec := b.collectionSpec(false)
	maps := map[string]*ebpf.Map{}
	defer func() {
		for _, m := range maps {
			m.Close()
		}
	}()
	for name, ms := range spec.Maps {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if errors.Is(err, os.ErrNotExist) {
			// sg_writer holds no policy (pins of older versions lack it):
			// the next Apply creates it.
			if name != mapWriter {
				d.Problems = append(d.Problems, fmt.Sprintf("map %s is not pinned", name))
			}
			continue
		}
		if err != nil {
			return d, fmt.Errorf("open pinned map %s: %w", name, err)
		}
		maps[name] = m
		if err := ms.Compatible(m); err != nil {
			d.Problems = append(d.Problems, fmt.Sprintf("map %s has the wrong layout: %v", name, err))
			delete(maps, name)
			m.Close()
		}
	}
	for _, h := range hooks {
		d.Problems = append(d.Problems, b.verifyHook(h, spec, cg, cgID)...)
	}
	local, err := b.cfg.LocalAddrs()
	if err != nil {
		return d, err
	}
	want, err := encode(rs, local)
	if err != nil {
		return d, err
	}
	kms := b.kmaps(maps)
	have, missing, err := readContents(kms)
	if err != nil {
		return d, err
	}
	content := problems(restrict(have, missing), restrict(want, missing))
	d.Problems = append(d.Problems, content...)
	b.learn(maps, kms, len(content) == 0 && len(missing) == 0, want)
	stale, err := bucketProblems(kms, want)
	if err != nil {
		return d, err
	}
	d.Problems = append(d.Problems, stale...)
	d.Problems = append(d.Problems, explainProblems(maps, rs)...)
	return d, nil
}

// verifyHook checks one program pin and link.
func (b *Backend) verifyHook(h hook, spec *ebpf.CollectionSpec, cg string, cgID uint64) []string {
	var out []string
	dir := b.PinDir()
	prog, err := ebpf.LoadPinnedProgram(filepath.Join(dir, h.progPin), nil)
	var progID ebpf.ProgramID
	if err != nil {
		out = append(out, fmt.Sprintf("program %s is not pinned (%v)", h.prog, err))
	} else {
		defer prog.Close()
		info, err := prog.Info()
		if err != nil {
			out = append(out, fmt.Sprintf("program %s: %v", h.prog, err))
		} else {
			progID, _ = info.ID()
			if spec.Programs[h.prog].Compatible(info) != nil {
				out = append(out, fmt.Sprintf("program %s is not this version's code", h.prog))
			}
		}
	}
	l, err := link.LoadPinnedLink(filepath.Join(dir, h.linkPin), nil)
	if err != nil {
		return append(out, fmt.Sprintf("link of %s is not pinned (%v)", h.prog, err))
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return append(out, fmt.Sprintf("link of %s: %v", h.prog, err))
	}
	switch ci := info.Cgroup(); {
	case ci == nil || ci.CgroupId == 0:
		out = append(out, fmt.Sprintf("link of %s is detached from its cgroup", h.prog))
	case ci.CgroupId != cgID:
		out = append(out, fmt.Sprintf("link of %s is attached to cgroup id %d, not %s (id %d)", h.prog, ci.CgroupId, cg, cgID))
	}
	if progID != 0 && info.Program != progID {
		out = append(out, fmt.Sprintf("link of %s runs program id %d, not the pinned program id %d", h.prog, info.Program, progID))
	}
	attached, err := cgroupPrograms(cg, h.attach)
	if err != nil {
		return append(out, err.Error())
	}
	if !slices.Contains(attached, info.Program) {
		out = append(out, fmt.Sprintf("cgroup %s does not run %s", cg, h.prog))
	}
	return out
}

// CgroupPrograms lists the ids of the programs attached directly to the
// cgroup at path for the connect4 and connect6 hooks (not the inherited
// ones): tests compare them before and after.
func CgroupPrograms(path string) (map[string][]ebpf.ProgramID, error) {
	out := map[string][]ebpf.ProgramID{}
	for _, h := range hooks {
		ids, err := cgroupPrograms(path, h.attach)
		if err != nil {
			return nil, err
		}
		out[h.attach.String()] = ids
	}
	return out, nil
}

func cgroupPrograms(path string, attach ebpf.AttachType) ([]ebpf.ProgramID, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open cgroup: %w", err)
	}
	defer f.Close()
	res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: attach})
	if err != nil {
		return nil, fmt.Errorf("list programs of cgroup %s: %w", path, err)
	}
	var ids []ebpf.ProgramID
	for _, p := range res.Programs {
		ids = append(ids, p.ID)
	}
	return ids, nil
}

// restrict drops the maps named in missing (reported already) from c.
func restrict(c contents, missing []string) contents {
	out := contents{sets: map[string]map[string]bool{}, config: c.config, rates: c.rates}
	if slices.Contains(missing, mapRates) {
		out.rates = nil
	}
	for name, s := range c.sets {
		if !slices.Contains(missing, name) {
			out.sets[name] = s
		}
	}
	if slices.Contains(missing, mapConfig) {
		out.config = [configSize]byte{}
	}
	return out
}

// Render is part of enforce.Backend.
func (b *Backend) Render(rs policy.Ruleset) string {
	local, err := b.cfg.LocalAddrs()
	if err != nil {
		b.log.Warn("cannot list this host's addresses for the plan", "err", err)
	}
	c, err := encode(rs, local)
	if err != nil {
		return "bpf: " + err.Error() + "\n"
	}
	cg, err := b.cgroupFor(rs)
	if err != nil {
		cg = "(" + err.Error() + ")"
	}
	return fmt.Sprintf("attached to cgroup %s, pinned under %s\n", cg, b.PinDir()) + render(rs, c) + renderExplain(rs)
}

// Watch is part of enforce.Backend. The kernel sends no notification when a
// map element changes or a link is detached, so there is nothing to watch:
// it returns an error wrapping enforce.ErrNotSupported at once, and the
// daemon relies on its periodic Verify.
func (b *Backend) Watch(ctx context.Context, changed func()) error {
	return fmt.Errorf("bpf backend has no change notifications (the daemon verifies periodically): %w", enforce.ErrNotSupported)
}

func randomHex(n int) string {
	buf := make([]byte, n)
	rand.Read(buf)
	return hex.EncodeToString(buf)
}

// readContents reads every set map and the config; maps absent from ms are
// listed in missing.
func readContents(ms map[string]kmap) (c contents, missing []string, err error) {
	c = newContents()
	for _, name := range setMaps {
		m, ok := ms[name]
		if !ok {
			missing = append(missing, name)
			continue
		}
		if c.sets[name], err = readSet(m); err != nil {
			return c, nil, fmt.Errorf("read map %s: %w", name, err)
		}
	}
	if err := readRates(ms, &c, &missing); err != nil {
		return c, nil, err
	}
	m, ok := ms[mapConfig]
	if !ok {
		return c, append(missing, mapConfig), nil
	}
	var v []byte
	if err := m.Lookup(uint32(0), &v); err != nil {
		return c, nil, fmt.Errorf("read map %s: %w", mapConfig, err)
	}
	copy(c.config[:], v)
	return c, missing, nil
}

func readSet(m kmap) (map[string]bool, error) { return readKeys(m) }

// writeContents makes the maps hold want, given that they hold *known (nil:
// read them). The order never lets more through than either the old or the
// new policy: new ports and removals of allowed entries first, then the
// config, then new allowed entries, then removed ports. After an error the
// old contents are written back.
func writeContents(ms map[string]kmap, known *contents, want contents) error {
	var have contents
	if known != nil {
		have = *known
	} else {
		var err error
		if have, _, err = readContents(ms); err != nil {
			return err
		}
	}
	if err := syncAll(ms, have, want); err != nil {
		now, _, rerr := readContents(ms)
		if rerr == nil {
			rerr = syncAll(ms, now, have)
		}
		if rerr != nil {
			return fmt.Errorf("%w (and restoring the previous contents failed: %v)", err, rerr)
		}
		return err
	}
	return nil
}

func syncAll(ms map[string]kmap, have, want contents) error {
	// Each map's difference once: the steps below add and delete apart.
	adds, dels := map[string][]string{}, map[string][]string{}
	for _, name := range setMaps {
		adds[name], dels[name] = diffSets(have.sets[name], want.sets[name])
	}
	step := func(name string, add, del bool) error {
		var a, d []string
		if add {
			a = adds[name]
		}
		if del {
			d = dels[name]
		}
		if err := writeDiff(ms[name], a, d); err != nil {
			return fmt.Errorf("update map %s: %w", name, err)
		}
		return nil
	}
	allowed := []string{mapUIDs, mapExc4, mapExc6, mapLocal4, mapLocal6}
	if err := step(mapPorts, true, false); err != nil {
		return err
	}
	if err := syncRatesTighten(ms, have.rates, want.rates); err != nil {
		return err
	}
	for _, name := range allowed {
		if err := step(name, false, true); err != nil {
			return err
		}
	}
	if have.config != want.config {
		if err := ms[mapConfig].Update(uint32(0), want.config[:], ebpf.UpdateAny); err != nil {
			return fmt.Errorf("update map %s: %w", mapConfig, err)
		}
	}
	for _, name := range allowed {
		if err := step(name, true, false); err != nil {
			return err
		}
	}
	if err := step(mapPorts, false, true); err != nil {
		return err
	}
	return syncRatesLoosen(ms, have.rates, want.rates)
}

// writeDiff adds the keys add to the set m, then deletes the keys del.
func writeDiff(m kmap, add, del []string) error {
	for _, k := range add {
		if err := m.Update([]byte(k), []byte{1}, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("add %x: %w", k, err)
		}
	}
	for _, k := range del {
		if err := m.Delete([]byte(k)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete %x: %w", k, err)
		}
	}
	return nil
}
