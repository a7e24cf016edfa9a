package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/fake"
	"github.com/smtpguard/smtpguard/internal/mta"
)

const testPasswd = `root:x:0:0:root:/root:/bin/bash
alice:x:1001:1001::/home/alice:/bin/bash
bob:x:1002:2000::/home/bob:/bin/bash
`

const testGroup = `root:x:0:
alice:x:1001:
mailers:x:2000:alice
`

type harness struct {
	t        *testing.T
	opts     Options
	backend  *fake.Backend
	stateDir string
	dir      string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{"passwd": testPasswd, "group": testGroup} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := fake.New("fake")
	return &harness{
		t:       t,
		backend: b,
		dir:     dir,
		opts: Options{
			Backends:   func(*slog.Logger) []enforce.Backend { return []enforce.Backend{b} },
			PasswdPath: filepath.Join(dir, "passwd"),
			GroupPath:  filepath.Join(dir, "group"),
			MTA:        mta.Config{Root: filepath.Join(dir, "root")},
			Getenv:     func(string) string { return "" },
			Actor:      func() string { return "tester" },
		},
		stateDir: filepath.Join(dir, "state"),
	}
}

type result struct {
	code           int
	stdout, stderr string
}

func (h *harness) run(args ...string) result {
	return h.runIn("", args...)
}

func (h *harness) runIn(stdin string, args ...string) result {
	h.t.Helper()
	var out, errb bytes.Buffer
	code := RunWith(context.Background(), append([]string{"--state-dir", h.stateDir}, args...),
		Stdio{In: strings.NewReader(stdin), Out: &out, Err: &errb}, h.opts)
	return result{code, out.String(), errb.String()}
}

func (h *harness) ok(args ...string) string {
	h.t.Helper()
	r := h.run(args...)
	if r.code != 0 {
		h.t.Fatalf("smtpguard %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

type statusJSON struct {
	Enabled       bool     `json:"enabled"`
	Backend       string   `json:"backend"`
	Mode          string   `json:"mode"`
	Ports         []int    `json:"ports"`
	AllowLocal    bool     `json:"allow_local"`
	AllowedUsers  []string `json:"allowed_users"`
	AllowedGroups []string `json:"allowed_groups"`
	Kernel        struct {
		State string `json:"state"`
	} `json:"kernel"`
}

func (h *harness) status() statusJSON {
	h.t.Helper()
	var st statusJSON
	if err := json.Unmarshal([]byte(h.ok("status", "--json")), &st); err != nil {
		h.t.Fatalf("status --json is not JSON: %v", err)
	}
	return st
}

func TestStatusJSONContract(t *testing.T) {
	h := newHarness(t)
	out := h.ok("status", "--json")
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("status --json = %q: %v", out, err)
	}
	for _, key := range []string{"enabled", "backend", "mode", "ports", "allowed_users", "allowed_groups"} {
		if _, ok := raw[key]; !ok {
			t.Errorf("status --json lacks %q, which scripts rely on", key)
		}
	}
	st := h.status()
	want := statusJSON{Backend: "auto", Mode: "reject", Ports: []int{25, 465, 587, 2525}, AllowLocal: true, AllowedUsers: []string{}, AllowedGroups: []string{}}
	want.Kernel.State = "not enforcing"
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("fresh status (-want +got):\n%s", diff)
	}
}

func TestEnableAllowRevokeDisable(t *testing.T) {
	h := newHarness(t)
	if out := h.ok("enable"); !strings.Contains(out, "enabled (backend fake)") {
		t.Errorf("enable printed %q", out)
	}
	h.ok("allow", "user", "alice")
	h.ok("allow", "group", "mailers")
	st := h.status()
	if !st.Enabled || st.Backend != "fake" || !cmp.Equal(st.AllowedUsers, []string{"alice"}) || !cmp.Equal(st.AllowedGroups, []string{"mailers"}) || st.Kernel.State != "in sync" {
		t.Errorf("status = %+v", st)
	}
	if got := h.backend.Installed().UIDs; !cmp.Equal(got, []uint32{0, 1001, 1002}) {
		t.Errorf("kernel uids = %v, want root, alice and bob (primary group mailers)", got)
	}
	h.ok("revoke", "user", "alice")
	h.ok("revoke", "group", "mailers")
	if got := h.backend.Installed().UIDs; !cmp.Equal(got, []uint32{0}) {
		t.Errorf("kernel uids after revoke = %v, want only root", got)
	}
	h.ok("disable")
	if h.backend.Installed() != nil || h.status().Enabled {
		t.Error("disable left the restriction in place")
	}
}

func TestBadInputExitsNonZeroWithOneLineAndChangesNothing(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"allow", "user", "mallory"}, ExitUsage, `no such user "mallory"`},
		{[]string{"allow", "group", "nogroup"}, ExitUsage, `no such group "nogroup"`},
		{[]string{"allow", "user"}, ExitUsage, "expects one user name or id"},
		{[]string{"allow", "user", "a", "b"}, ExitUsage, "expects one user name or id"},
		{[]string{"allow", "someone"}, ExitUsage, "expects 'user NAME|UID'"},
		{[]string{"set", "ports", "0"}, ExitUsage, "outside 1-65535"},
		{[]string{"set", "ports", "70000"}, ExitUsage, "outside 1-65535"},
		{[]string{"set", "ports", "25,25"}, ExitUsage, "listed twice"},
		{[]string{"set", "ports", "abc"}, ExitUsage, "not a number"},
		{[]string{"set", "mode", "bogus"}, ExitUsage, "unknown mode"},
		{[]string{"set", "allow-local", "maybe"}, ExitUsage, "use on or off"},
		{[]string{"enable", "--backend", "bpf"}, ExitUsage, `unknown backend "bpf"`},
		{[]string{"bogus"}, ExitUsage, `unknown command "bogus"`},
		{[]string{"status", "--bogus"}, ExitUsage, "unknown flag"},
		{[]string{"import", "/nonexistent/policy.toml"}, ExitUsage, "no such file"},
		{[]string{"events", "--since", "yesterday"}, ExitUsage, "invalid argument"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			h := newHarness(t)
			h.ok("enable")
			h.ok("allow", "user", "alice")
			before := h.ok("export")
			calls := len(h.backend.Calls())
			r := h.run(tt.args...)
			if r.code != tt.code {
				t.Errorf("exit code = %d, want %d", r.code, tt.code)
			}
			if lines := strings.Count(r.stderr, "\n"); lines != 1 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr = %q, want one line containing %q", r.stderr, tt.want)
			}
			if after := h.ok("export"); after != before {
				t.Errorf("policy changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			for _, c := range h.backend.Calls()[calls:] {
				if c == "apply" || c == "remove" {
					t.Errorf("kernel call %q on bad input", c)
				}
			}
		})
	}
}

func TestExportImportRoundTrip(t *testing.T) {
	for _, ext := range []string{"toml", "yaml"} {
		t.Run(ext, func(t *testing.T) {
			h := newHarness(t)
			h.ok("enable")
			h.ok("allow", "user", "alice")
			h.ok("allow", "group", "mailers")
			h.ok("set", "ports", "25,587,2525")
			h.ok("set", "mode", "log")
			before := h.status()
			file := filepath.Join(h.dir, "policy."+ext)
			h.ok("export", "--output", file)
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), "version") {
				t.Errorf("exported file lacks its version:\n%s", data)
			}
			h.ok("disable")
			h.ok("revoke", "user", "alice")
			h.ok("import", file)
			if diff := cmp.Diff(before, h.status()); diff != "" {
				t.Errorf("status after import (-before +after):\n%s", diff)
			}
		})
	}
}

func TestImportFromStdinAndBadFiles(t *testing.T) {
	h := newHarness(t)
	r := h.runIn("version = 1\nenabled = false\nallowed_users = [\"alice\"]\n", "import", "-")
	if r.code != 0 {
		t.Fatalf("import - : exit %d, %s", r.code, r.stderr)
	}
	if got := h.status().AllowedUsers; !cmp.Equal(got, []string{"alice"}) {
		t.Errorf("allowed users after import from stdin = %v", got)
	}
	for name, content := range map[string]string{
		"garbage":     "this is not a policy\x00\x01",
		"no version":  "enabled = true\n",
		"no enabled":  "version = 1\nallowed_users = [\"alice\"]\n",
		"unknown key": "version = 1\nenabled = true\nfirewall = \"off\"\n",
		"bad values":  "version = 1\nenabled = true\nports = [0, 70000]\nallowed_users = [\"mallory\"]\n",
	} {
		t.Run(name, func(t *testing.T) {
			before := h.ok("export")
			r := h.runIn(content, "import", "-")
			if r.code != ExitUsage || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("import of %s: exit %d stderr %q, want exit 2 and one line", name, r.code, r.stderr)
			}
			if after := h.ok("export"); after != before {
				t.Errorf("a rejected import changed the policy")
			}
		})
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	h := newHarness(t)
	var walk func(cmd *cobra.Command, path []string)
	walk = func(cmd *cobra.Command, path []string) {
		t.Run(strings.Join(append(path, "--help"), " "), func(t *testing.T) {
			r := h.run(append(path, "--help")...)
			if r.code != 0 || !strings.Contains(r.stdout, "Usage:") || cmd.Short == "" {
				t.Errorf("exit %d, stdout %q; want usage text and a short description", r.code, r.stdout)
			}
		})
		for _, sub := range cmd.Commands() {
			if sub.Name() == "help" {
				continue
			}
			walk(sub, append(path, sub.Name()))
		}
	}
	walk(newRootCmd(&env{opts: h.opts}), nil)
}

func TestPlanAndAuditAndEvents(t *testing.T) {
	h := newHarness(t)
	h.ok("allow", "user", "bob")
	plan := h.ok("plan")
	if !strings.Contains(plan, "1002 bob: allowed user bob") || !strings.Contains(plan, "uids=[0 1002]") {
		t.Errorf("plan output:\n%s", plan)
	}
	if h.backend.Installed() != nil {
		t.Error("plan changed the kernel")
	}
	audit := h.ok("audit")
	if !strings.Contains(audit, "tester") || !strings.Contains(audit, "user bob") {
		t.Errorf("audit output:\n%s", audit)
	}
	if out := h.ok("events"); !strings.Contains(out, "no blocked attempts recorded") {
		t.Errorf("events on an empty store = %q", out)
	}
	if out := strings.TrimSpace(h.ok("events", "--json")); out != "[]" {
		t.Errorf("events --json on an empty store = %q, want []", out)
	}
}

func TestStateDirFromEnvironment(t *testing.T) {
	h := newHarness(t)
	envDir := filepath.Join(h.dir, "from-env")
	h.opts.Getenv = func(k string) string {
		if k == "SMTPGUARD_STATE_DIR" {
			return envDir
		}
		return ""
	}
	var out, errb bytes.Buffer
	if code := RunWith(context.Background(), []string{"allow", "user", "alice"}, Stdio{In: strings.NewReader(""), Out: &out, Err: &errb}, h.opts); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if _, err := os.Stat(filepath.Join(envDir, "smtpguard.db")); err != nil {
		t.Errorf("SMTPGUARD_STATE_DIR was not used: %v", err)
	}
}

func TestMTAStatusWithoutAnMTA(t *testing.T) {
	h := newHarness(t)
	out := h.ok("mta", "status", "--json")
	var info map[string]any
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("mta status --json = %q: %v", out, err)
	}
	for _, key := range []string{"mta", "version", "installed", "running", "users", "groups", "list_users", "config", "limits"} {
		if _, ok := info[key]; !ok {
			t.Errorf("mta status --json lacks %q", key)
		}
	}
	if info["mta"] != "none" || info["installed"] != false {
		t.Errorf("mta status on a host without an MTA = %v", info)
	}
	if r := h.run("mta", "set", "max-connections", "10"); r.code == 0 || !strings.Contains(r.stderr, "not supported") {
		t.Errorf("mta set without an MTA: exit %d, %q", r.code, r.stderr)
	}
	if r := h.run("mta", "set", "max-connections", "ten"); r.code != ExitUsage {
		t.Errorf("mta set max-connections ten: exit %d, want %d", r.code, ExitUsage)
	}
}

func TestStatusShortensLongListsUnlessAll(t *testing.T) {
	h := newHarness(t)
	h.ok("enable")
	const n = statusListMax + 5
	for i := range n {
		h.ok("allow", "user", strconv.Itoa(50000+i))
	}
	short := h.ok("status")
	if !strings.Contains(short, "and 5 more (status --all lists them)") || strings.Contains(short, strconv.Itoa(50000+n-1)) {
		t.Errorf("status with %d allowed users does not shorten the lists:\n%s", n, short)
	}
	full := h.ok("status", "--all")
	if strings.Contains(full, "more (status --all") || strings.Count(full, "allowed user 5") != n {
		t.Errorf("status --all does not list all %d allowed users:\n%s", n, full)
	}
	if st := h.status(); len(st.AllowedUsers) != n {
		t.Errorf("status --json lists %d allowed users, want %d", len(st.AllowedUsers), n)
	}
}
