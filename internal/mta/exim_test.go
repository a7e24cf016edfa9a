package mta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var _ Manager = (*Exim)(nil)
var _ Manager = (*Postfix)(nil)

// fakeExim answers the exim command lines Exim's manager runs, so its
// write/validate/restore flow is tested without an exim binary (the
// privileged tests use the real one). It reads the three limit options
// from the main section of the selected file the way Exim would, and
// refuses a file containing "no_such_option" like Exim refuses an unknown
// option.
type fakeExim struct {
	config string // the file used without -C
	calls  []string
}

func (f *fakeExim) run(_ context.Context, _ string, args ...string) ([]byte, error) {
	f.calls = append(f.calls, strings.Join(args, " "))
	cfg := f.config
	if len(args) >= 2 && args[0] == "-C" {
		cfg, args = args[1], args[2:]
	}
	data, err := os.ReadFile(cfg)
	if err != nil {
		return nil, fmt.Errorf("exim: %w", err)
	}
	if bytes.Contains(data, []byte("no_such_option")) {
		return []byte("Exim version 4.96 #2 built 11-May-2026 17:12:18\n"),
			errors.New(`exit status 1: Exim configuration error: main option "no_such_option" unknown`)
	}
	switch args[0] {
	case "-bV":
		return []byte("Exim version 4.96 #2 built 11-May-2026 17:12:18\n"), nil
	case "-bP":
		values := map[string]string{eximMax: "20", eximPerHost: "", eximReserve: "0", "pid_file_path": "", "spool_directory": filepath.Join(filepath.Dir(cfg), "spool")}
		lines := splitLines(data)
		for i := 0; i < len(lines); {
			if isBlankOrComment(lines[i]) {
				i++
				continue
			}
			l := eximLogicalLine(lines, i)
			if eximBeginRE.MatchString(l.text) {
				break
			}
			if m := eximOptionRE.FindStringSubmatch(l.text); m != nil && !strings.HasPrefix(lines[i], ".") {
				_, v, _ := strings.Cut(strings.Join(lines[l.start:l.end], ""), "=")
				values[m[2]] = strings.Join(strings.Fields(strings.ReplaceAll(v, "\\\n", "")), " ")
			}
			i = l.end
		}
		var out strings.Builder
		for _, name := range args[1:] {
			fmt.Fprintf(&out, "%s = %s\n", name, values[name])
		}
		return []byte(out.String()), nil
	}
	return nil, fmt.Errorf("fakeExim: unexpected %v", args)
}

func TestEximSetLimitsFlow(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "exim.conf")
	orig := readTestdata(t, "exim/cpanel-exim.conf")
	if err := os.WriteFile(cfg, orig, 0o640); err != nil {
		t.Fatal(err)
	}
	fake := &fakeExim{config: cfg}
	var reloads int
	var reloadErr error
	opts := Options{
		Root:       fixture(t, "usr/sbin/exim"),
		ProcRoot:   t.TempDir(),
		EximBinary: "exim",
		EximConfig: cfg,
		Reload: func(context.Context) error {
			reloads++
			return reloadErr
		},
	}
	m, err := newExim(ctx, opts, directoryWithGroups(t), fake.run)
	if err != nil {
		t.Fatal(err)
	}

	info, err := m.Info(ctx)
	if err != nil {
		t.Fatalf("Info() error = %v", err)
	}
	if info.MTA != "exim" || info.Version != "4.96" || info.Config != cfg || info.Limits != (Limits{MaxConnections: 100}) || !info.Installed || info.Running {
		t.Errorf("Info() = %+v", info)
	}

	t.Run("invalid limits touch nothing", func(t *testing.T) {
		calls := len(fake.calls)
		if _, err := m.SetLimits(ctx, Limits{MaxConnections: 5, Reserve: 5}); err == nil || !strings.Contains(err.Error(), "reserve") {
			t.Errorf("SetLimits(reserve 5 of 5) = %v, want a reserve range error", err)
		}
		if len(fake.calls) != calls {
			t.Errorf("SetLimits with invalid limits ran exim: %v", fake.calls[calls:])
		}
	})

	t.Run("success", func(t *testing.T) {
		want := Limits{MaxConnections: 2, MaxPerHost: 1, Reserve: 1}
		before, err := m.SetLimits(ctx, want)
		if err != nil {
			t.Fatalf("SetLimits() error = %v", err)
		}
		if before != (Limits{MaxConnections: 100}) {
			t.Errorf("before = %+v, want max 100", before)
		}
		golden(t, "exim/cpanel-exim.conf.max2", readFileBytes(t, cfg))
		if reloads != 1 {
			t.Errorf("reloads = %d, want 1", reloads)
		}
		if fi, err := os.Stat(cfg); err != nil || fi.Mode().Perm() != 0o640 {
			t.Errorf("mode after SetLimits = %v (%v), want 0640 kept", fi.Mode().Perm(), err)
		}
		if info, _ := m.Info(ctx); info.Limits != want {
			t.Errorf("Info().Limits = %+v, want %+v", info.Limits, want)
		}
	})

	t.Run("refused candidate", func(t *testing.T) {
		prev := readFileBytes(t, cfg)
		m.editCandidate = func(b []byte) []byte { return append([]byte("no_such_option = 1\n"), b...) }
		defer func() { m.editCandidate = nil }()
		if _, err := m.SetLimits(ctx, Limits{MaxConnections: 3}); err == nil || !strings.Contains(err.Error(), "no_such_option") || !strings.Contains(err.Error(), "unchanged") {
			t.Errorf("SetLimits() = %v, want exim's complaint and that the file is unchanged", err)
		}
		if got := readFileBytes(t, cfg); !bytes.Equal(got, prev) {
			t.Error("config changed after a refused candidate")
		}
		if l := leftoverFiles(t, dir); len(l) > 0 {
			t.Errorf("leftovers: %v", l)
		}
		if reloads != 1 {
			t.Errorf("reloads = %d, want still 1", reloads)
		}
	})

	t.Run("failed reload restores", func(t *testing.T) {
		prev := readFileBytes(t, cfg)
		reloadErr = errors.New("injected reload failure")
		defer func() { reloadErr = nil }()
		if _, err := m.SetLimits(ctx, Limits{MaxConnections: 4}); err == nil || !strings.Contains(err.Error(), "injected reload failure") {
			t.Errorf("SetLimits() = %v, want the reload failure", err)
		}
		if got := readFileBytes(t, cfg); !bytes.Equal(got, prev) {
			t.Error("config not restored byte for byte after a failed reload")
		}
	})

	t.Run("no running daemon: nothing to reload", func(t *testing.T) {
		noReload := opts
		noReload.Reload = nil
		m, err := newExim(ctx, noReload, directoryWithGroups(t), fake.run)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.SetLimits(ctx, Limits{MaxConnections: 6}); err != nil {
			t.Errorf("SetLimits() without a daemon = %v, want nil", err)
		}
		if got, _ := m.values(ctx, m.configArgs()...); got.MaxConnections != 6 {
			t.Errorf("max after SetLimits = %d, want 6", got.MaxConnections)
		}
	})

	t.Run("per-host expansion kept when max_per_host is 0", func(t *testing.T) {
		cfg := filepath.Join(t.TempDir(), "exim.conf")
		if err := os.WriteFile(cfg, readTestdata(t, "exim/rhel-exim.conf"), 0o644); err != nil {
			t.Fatal(err)
		}
		o := opts
		o.EximConfig = cfg
		m, err := newExim(ctx, o, directoryWithGroups(t), (&fakeExim{config: cfg}).run)
		if err != nil {
			t.Fatal(err)
		}
		before, err := m.SetLimits(ctx, Limits{MaxConnections: 40, Reserve: 4})
		if err != nil {
			t.Fatalf("SetLimits() error = %v", err)
		}
		// The fake, like Exim here, takes the .ifdef's first branch.
		if before != (Limits{MaxConnections: 50, Reserve: 2}) && before != (Limits{MaxConnections: 500, Reserve: 2}) {
			t.Errorf("before = %+v", before)
		}
		golden(t, "exim/rhel-exim.conf.max40-keep", readFileBytes(t, cfg))
	})
}

func readFileBytes(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func leftoverFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, tempPrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEximDebianDetection(t *testing.T) {
	// The Debian flow is chosen by the configuration in use; it is exercised
	// against the real update-exim4.conf in TestPrivilegedEximLimitsDebianLayout.
	ctx := t.Context()
	auto := filepath.Join(t.TempDir(), "config.autogenerated")
	if err := os.WriteFile(auto, []byte("smtp_accept_max = 20\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fake := &fakeExim{config: auto}
	m, err := newExim(ctx, Options{
		EximBinary: "exim", EximConfig: auto, DebianEximAutoConfig: auto,
		DebianEximConfDir: filepath.Join(t.TempDir(), "missing"),
		Reload:            func(context.Context) error { return nil },
	}, directoryWithGroups(t), fake.run)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.SetLimits(ctx, Limits{MaxConnections: 5})
	if err == nil || !strings.Contains(err.Error(), "update-exim4.conf.conf") {
		t.Errorf("SetLimits() on Debian's generated config without its sources = %v, want an error about update-exim4.conf.conf", err)
	}
	if got := readFileBytes(t, auto); string(got) != "smtp_accept_max = 20\n" {
		t.Errorf("generated config edited directly: %q", got)
	}
}
