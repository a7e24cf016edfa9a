package daemon

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/store"
)

// fakeProcess writes /proc/TGID of a PHP-FPM worker under root.
func fakeProcess(t *testing.T, root, tgid string) {
	t.Helper()
	dir := filepath.Join(root, tgid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"comm":    "php-fpm8.2\n",
		"cmdline": "php-fpm: pool bob\x00\x00\x00",
		"cgroup":  "0::/system.slice/php8.2-fpm.service\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{"exe": "/usr/sbin/php-fpm8.2", "cwd": "/home/bob/public_html"} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// A backend that reports the process (bpf) gets its attempts named from
// /proc: stored, in events, and in the notify command's JSON. One that
// cannot (nft) leaves every field empty.
func TestBlockedAttemptsNameTheProcess(t *testing.T) {
	f := newFixture(t)
	f.eng.Enable(context.Background(), admin, "fake")
	procRoot := t.TempDir()
	fakeProcess(t, procRoot, "4242")
	out := filepath.Join(f.dir, "notified")
	script := filepath.Join(f.dir, "notify.sh")
	os.WriteFile(script, []byte("#!/bin/sh\ncat >> "+out+"\n"), 0o755)
	f.start(t, Config{ProcRoot: procRoot, NotifyCommand: script, NotifyInterval: time.Hour})

	now := time.Now()
	f.backend.Emit(enforce.Event{Time: now, UID: 1002, HasUID: true, Family: 4, Dst: netip.MustParseAddr("192.0.2.3"), DstPort: 587,
		Action: enforce.ActionBlocked, PID: 4243, TGID: 4242, Comm: "php-fpm8.2"})
	f.backend.Emit(enforce.Event{Time: now, UID: 1001, HasUID: true, Family: 4, Dst: netip.MustParseAddr("192.0.2.4"), DstPort: 25,
		Action: enforce.ActionBlocked}) // as nft reports it
	var evs []store.Event
	waitFor(t, "events stored", func() bool {
		evs, _ = f.eng.Store().Events(context.Background(), store.EventFilter{})
		return len(evs) == 2
	})
	want := map[string]store.Process{
		"bob": {PID: 4242, Comm: "php-fpm8.2", Exe: "/usr/sbin/php-fpm8.2", Cmdline: "php-fpm: pool bob", Cwd: "/home/bob/public_html",
			Cgroup: "/system.slice/php8.2-fpm.service", Unit: "php8.2-fpm.service", Pool: "bob"},
		"alice": {},
	}
	got := map[string]store.Process{}
	for _, e := range evs {
		got[e.User] = e.Process
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stored processes by user (-want +got):\n%s", diff)
	}

	// events --json carries every key, empty where unknown.
	views, err := f.eng.Events(context.Background(), store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		data, _ := json.Marshal(v)
		var m map[string]any
		json.Unmarshal(data, &m)
		for _, k := range []string{"pid", "comm", "exe", "cmdline", "cwd", "cgroup", "unit", "container", "pool"} {
			if _, ok := m[k]; !ok {
				t.Errorf("events JSON of %s lacks %q: %s", v.User, k, data)
			}
		}
	}

	var note []byte
	waitFor(t, "the notify command to run for bob", func() bool {
		note, _ = os.ReadFile(out)
		return strings.Contains(string(note), `"user":"bob"`)
	})
	for _, kv := range []string{`"pid":4242`, `"exe":"/usr/sbin/php-fpm8.2"`, `"unit":"php8.2-fpm.service"`, `"pool":"bob"`, `"container":""`} {
		if !strings.Contains(string(note), kv) {
			t.Errorf("notify JSON lacks %s:\n%s", kv, note)
		}
	}
}
