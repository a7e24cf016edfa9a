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

// fakePostfix answers the postconf and postfix command lines Postfix's
// manager runs, from the main.cf and master.cf in the -c directory.
// `postfix check` fails when main.cf contains "broken".
type fakePostfix struct {
	calls []string
}

func (f *fakePostfix) run(_ context.Context, name string, args ...string) ([]byte, error) {
	f.calls = append(f.calls, name+" "+strings.Join(args, " "))
	if len(args) < 3 || args[0] != "-c" {
		return nil, fmt.Errorf("fakePostfix: want -c DIR ..., got %v", args)
	}
	dir, rest := args[1], args[2:]
	mainCF, err := os.ReadFile(filepath.Join(dir, "main.cf"))
	if err != nil {
		return nil, fmt.Errorf("%s: fatal: %w", name, err)
	}
	switch {
	case name == "postconf" && rest[0] == "-M":
		return os.ReadFile(filepath.Join(dir, "master.cf"))
	case name == "postconf" && rest[0] == "-h" && rest[1] == "mail_version":
		return []byte("3.7.11\n"), nil
	case name == "postconf" && rest[0] == "-x":
		values := map[string]string{postfixPerHost: "50", "default_process_limit": "100"}
		for k, v := range parseNameValues(mainCF) {
			values[k] = v
		}
		var out strings.Builder
		for _, p := range rest[1:] {
			fmt.Fprintf(&out, "%s = %s\n", p, values[p])
		}
		return []byte(out.String()), nil
	case name == "postfix" && rest[0] == "check":
		if bytes.Contains(mainCF, []byte("broken")) {
			return nil, errors.New("exit status 1: postfix/postfix-script: fatal: broken main.cf")
		}
		return nil, nil
	case name == "postfix" && rest[0] == "status":
		return nil, errors.New("exit status 1: the Postfix mail system is not running")
	}
	return nil, fmt.Errorf("fakePostfix: unexpected %s %v", name, args)
}

func TestPostfixSetLimitsFlow(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	for _, f := range []string{"main.cf", "master.cf"} {
		if err := os.WriteFile(filepath.Join(dir, f), readTestdata(t, "postfix/"+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fake := &fakePostfix{}
	var reloads int
	var reloadErr error
	m, err := newPostfix(ctx, Options{
		Root:             fixture(t, "usr/sbin/postfix"),
		ProcRoot:         t.TempDir(),
		PostfixConfigDir: dir,
		PostconfBinary:   "postconf",
		PostfixBinary:    "postfix",
		Reload: func(context.Context) error {
			reloads++
			return reloadErr
		},
	}, directoryWithGroups(t), fake.run)
	if err != nil {
		t.Fatal(err)
	}
	info, err := m.Info(ctx)
	if err != nil {
		t.Fatalf("Info() error = %v", err)
	}
	if info.MTA != "postfix" || info.Version != "3.7.11" || info.Config != dir || info.Limits != (Limits{MaxConnections: 100, MaxPerHost: 50}) {
		t.Errorf("Info() = %+v", info)
	}
	if want := []string{"postfix"}; len(info.Users) != 1 || info.Users[0] != want[0] || len(info.Groups) != 1 || info.Groups[0] != "postfix" {
		t.Errorf("Info() users %v groups %v, want postfix/postfix", info.Users, info.Groups)
	}

	t.Run("reserve is not a postfix setting", func(t *testing.T) {
		if _, err := m.SetLimits(ctx, Limits{MaxConnections: 30, Reserve: 1}); err == nil || !strings.Contains(err.Error(), "reserve") {
			t.Errorf("SetLimits(reserve 1) = %v, want a reserve error", err)
		}
	})

	t.Run("success", func(t *testing.T) {
		before, err := m.SetLimits(ctx, Limits{MaxConnections: 30, MaxPerHost: 10})
		if err != nil {
			t.Fatalf("SetLimits() error = %v", err)
		}
		if before != (Limits{MaxConnections: 100, MaxPerHost: 50}) {
			t.Errorf("before = %+v", before)
		}
		golden(t, "postfix/main.cf.perhost10", readFileBytes(t, filepath.Join(dir, "main.cf")))
		golden(t, "postfix/master.cf.max30", readFileBytes(t, filepath.Join(dir, "master.cf")))
		if reloads != 1 {
			t.Errorf("reloads = %d, want 1", reloads)
		}
	})

	for _, tc := range []struct {
		name    string
		prepare func()
		want    string
	}{
		{
			name: "failed postfix check restores both files",
			prepare: func() {
				f := filepath.Join(dir, "main.cf")
				os.WriteFile(f, append(readFileBytes(t, f), "# broken\n"...), 0o644)
			},
			want: "postfix check",
		},
		{
			name: "failed reload restores both files",
			prepare: func() {
				f := filepath.Join(dir, "main.cf")
				os.WriteFile(f, bytes.ReplaceAll(readFileBytes(t, f), []byte("# broken\n"), nil), 0o644)
				reloadErr = errors.New("injected reload failure")
			},
			want: "injected reload failure",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.prepare()
			defer func() { reloadErr = nil }()
			mainBefore := readFileBytes(t, filepath.Join(dir, "main.cf"))
			masterBefore := readFileBytes(t, filepath.Join(dir, "master.cf"))
			if _, err := m.SetLimits(ctx, Limits{MaxConnections: 40, MaxPerHost: 5}); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "restored") {
				t.Errorf("SetLimits() = %v, want %q and that the configuration was restored", err, tc.want)
			}
			if !bytes.Equal(readFileBytes(t, filepath.Join(dir, "main.cf")), mainBefore) || !bytes.Equal(readFileBytes(t, filepath.Join(dir, "master.cf")), masterBefore) {
				t.Error("main.cf or master.cf not restored byte for byte")
			}
			if l := leftoverFiles(t, dir); len(l) > 0 {
				t.Errorf("leftovers: %v", l)
			}
		})
	}
}
