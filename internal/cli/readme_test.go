//go:build linux

package cli

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/fake"
	realnft "github.com/smtpguard/smtpguard/internal/enforce/nft"
	"github.com/smtpguard/smtpguard/internal/store"
)

// The README's examples of status and events are the real output of the
// commands on a fixture host, so they cannot drift from the code. Times and
// pids are compared as placeholders. SMTPGUARD_UPDATE_README=1 rewrites the
// README's blocks with the current output.

const readmePasswd = `root:x:0:0:root:/root:/bin/bash
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
Debian-exim:x:101:101::/var/spool/exim4:/usr/sbin/nologin
alice:x:1001:1001::/home/alice:/bin/bash
bob:x:1002:1002::/home/bob:/bin/bash
`

const readmeGroup = `root:x:0:
www-data:x:33:
Debian-exim:x:101:
alice:x:1001:
bob:x:1002:
mailers:x:2000:bob
`

var (
	readmeTime = regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d`)
	readmePID  = regexp.MustCompile(`pid \d+`)
)

func normalizeExample(s string) string {
	s = readmeTime.ReplaceAllString(s, "YYYY-MM-DD hh:mm:ss")
	s = readmePID.ReplaceAllString(s, "pid N")
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		lines = append(lines, strings.TrimRight(l, " "))
	}
	return strings.Join(lines, "\n")
}

// readmeBlock returns the output the README shows after the prompt line
// "# CMD": the lines up to the next prompt, blank line or end of block, and
// where they are.
func readmeBlock(t *testing.T, readme, cmd string) (string, int, int) {
	t.Helper()
	prompt := "# " + cmd + "\n"
	start := strings.Index(readme, prompt)
	if start < 0 {
		t.Fatalf("README.md has no example of %q", cmd)
	}
	start += len(prompt)
	end := start
	for end < len(readme) {
		nl := strings.IndexByte(readme[end:], '\n')
		if nl < 0 {
			break
		}
		line := readme[end : end+nl]
		if strings.HasPrefix(line, "# ") || strings.HasPrefix(line, "```") || line == "" && strings.HasPrefix(readme[end+nl+1:], "# ") {
			break
		}
		end += nl + 1
	}
	return readme[start:end], start, end
}

func TestReadmeExamplesAreRealOutput(t *testing.T) {
	h := newHarness(t)
	for name, content := range map[string]string{"passwd": readmePasswd, "group": readmeGroup} {
		if err := os.WriteFile(filepath.Join(h.dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exim := filepath.Join(h.dir, "root", "usr", "sbin", "exim4")
	if err := os.MkdirAll(filepath.Dir(exim), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exim, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	// The fake kernel describes itself as the real nft backend does, so
	// the example shows what an administrator sees.
	nft := fake.New("nft")
	nft.SetDescription(realnft.New(realnft.Config{Logger: slog.New(slog.DiscardHandler)}).Describe())
	h.opts.Backends = func(*slog.Logger) []enforce.Backend { return []enforce.Backend{nft} }
	h.opts.Actor = func() string { return "root" }

	got := map[string]string{}
	for _, args := range [][]string{{"enable"}, {"allow", "user", "alice"}, {"allow", "group", "mailers"}} {
		got["smtpguard "+strings.Join(args, " ")] = h.ok(args...)
	}
	// The daemon runs, as after install-service, on the same (fake) kernel.
	serveFake(t, h, nft)
	got["smtpguard status"] = h.ok("status")

	st := h.openStore()
	now := time.Now()
	if err := st.RecordEvents(context.Background(), []store.Event{
		// As the bpf backend records them: the process is known.
		{UID: 33, User: "www-data", Family: 4, Address: "192.0.2.25", Port: 25, Action: "blocked", Count: 40, FirstSeen: now.Add(-3 * time.Minute), LastSeen: now.Add(-3 * time.Minute),
			Process: store.Process{PID: 21742, Comm: "php-fpm8.2", Exe: "/usr/sbin/php-fpm8.2", Cmdline: "php-fpm: pool www", Cwd: "/var/www/shop/wp-content/plugins/mailer",
				Cgroup: "/system.slice/php8.2-fpm.service", Unit: "php8.2-fpm.service", Pool: "www"}},
		{UID: 33, User: "www-data", Family: 6, Address: "2001:db8:53::25", Port: 587, Action: "blocked", Count: 12, FirstSeen: now.Add(-time.Minute), LastSeen: now.Add(-time.Minute),
			Process: store.Process{PID: 21790, Comm: "php", Exe: "/usr/bin/php8.2", Cmdline: "/bin/sh -c php /var/www/shop/cron/newsletter.php", Cwd: "/var/www/shop",
				Cgroup: "/system.slice/cron.service", Unit: "cron.service"}},
	}); err != nil {
		t.Fatal(err)
	}
	got["smtpguard events --since 24h"] = h.ok("events", "--since", "24h")

	path := filepath.Join("..", "..", "README.md")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	update := os.Getenv("SMTPGUARD_UPDATE_README") == "1"
	for _, cmd := range []string{"smtpguard enable", "smtpguard allow user alice", "smtpguard status", "smtpguard events --since 24h"} {
		shown, start, end := readmeBlock(t, readme, cmd)
		if update {
			readme = readme[:start] + got[cmd] + readme[end:]
			continue
		}
		if diff := cmp.Diff(normalizeExample(shown), normalizeExample(got[cmd])); diff != "" {
			t.Errorf("README.md's example of %q is not what the command prints (-README +real); rerun with SMTPGUARD_UPDATE_README=1 to rewrite it:\n%s", cmd, diff)
		}
	}
	if update {
		if err := os.WriteFile(path, []byte(readme), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
