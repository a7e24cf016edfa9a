package engine

import (
	"testing"

	"github.com/smtpguard/smtpguard/internal/store"
)

const dockerID = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5061728394a5b6c7d8e"

func TestProcessLabelAndSource(t *testing.T) {
	tests := []struct {
		name          string
		p             store.Process
		label, source string
	}{
		{"php-fpm pool: the pool and the script's directory",
			store.Process{PID: 1234, Comm: "php-fpm8.2", Exe: "/usr/sbin/php-fpm8.2", Cmdline: "php-fpm: pool www", Cwd: "/home/u/public_html/wp",
				Cgroup: "/system.slice/php8.2-fpm.service", Unit: "php8.2-fpm.service", Pool: "www"},
			"php-fpm8.2[1234]", "pool www in /home/u/public_html/wp"},
		{"php-fpm pool, cwd the root",
			store.Process{PID: 7, Comm: "php-fpm8.2", Cmdline: "php-fpm: pool shop", Cwd: "/", Unit: "php8.2-fpm.service", Pool: "shop"},
			"php-fpm8.2[7]", "pool shop"},
		{"php CLI script",
			store.Process{PID: 42, Comm: "php", Exe: "/usr/bin/php8.2", Cmdline: "php /home/u/public_html/x.php", Cwd: "/home/u", Unit: "user-1001.slice"},
			"php[42]", "/home/u/public_html/x.php"},
		{"php -d options before the script",
			store.Process{PID: 42, Comm: "php", Cmdline: "/usr/bin/php -d memory_limit=1G -f mailer", Cwd: "/home/u/bin"},
			"php[42]", "/home/u/bin/mailer"},
		{"python script, relative to the working directory",
			store.Process{PID: 5150, Comm: "python3", Exe: "/usr/bin/python3.11", Cmdline: "python3 -u send.py --to all", Cwd: "/home/u", Unit: "user-1001.slice"},
			"python3[5150]", "/home/u/send.py"},
		{"python3 /home/u/send.py",
			store.Process{PID: 9, Comm: "python3", Cmdline: "python3 /home/u/send.py", Cwd: "/"},
			"python3[9]", "/home/u/send.py"},
		{"python module: no script",
			store.Process{PID: 9, Comm: "python3", Cmdline: "python3 -m smtplib", Unit: "user-1001.slice"},
			"python3[9]", "user-1001.slice"},
		{"bash script without an extension, run by its #! line",
			store.Process{PID: 77, Comm: "mailout", Exe: "/usr/bin/bash", Cmdline: "/bin/bash /home/u/bin/mailout", Cwd: "/home/u", Unit: "session-3.scope"},
			"mailout[77]", "/home/u/bin/mailout"},
		{"sh -c with inline code: the unit",
			store.Process{PID: 78, Comm: "sh", Exe: "/usr/bin/dash", Cmdline: "/bin/sh -c nc mx.example 25", Unit: "cron.service"},
			"sh[78]", "cron.service"},
		{"cron running a PHP script through sh -c",
			store.Process{PID: 80, Comm: "php", Cmdline: "/bin/sh -c php /home/u/cron/newsletter.php >/dev/null 2>&1", Cwd: "/home/u",
				Cgroup: "/system.slice/cron.service", Unit: "cron.service"},
			"php[80]", "/home/u/cron/newsletter.php"},
		{"cron unit, a compiled program",
			store.Process{PID: 81, Comm: "spammer", Exe: "/home/u/spammer", Cmdline: "/home/u/spammer", Cwd: "/home/u", Cgroup: "/system.slice/cron.service", Unit: "cron.service"},
			"spammer[81]", "cron.service"},
		{"docker container",
			store.Process{PID: 3001, Comm: "swaks", Exe: "/usr/bin/perl", Cmdline: "/usr/bin/perl /usr/bin/swaks --to a@example.test", Cwd: "/",
				Cgroup: "/system.slice/docker-" + dockerID + ".scope", Unit: "docker-" + dockerID + ".scope", Container: dockerID},
			"swaks[3001]", "/usr/bin/swaks in container 3f2a9c1b7d4e"},
		{"docker container, nothing run by an interpreter",
			store.Process{PID: 3002, Comm: "sendmail", Exe: "/usr/sbin/sendmail", Cmdline: "sendmail -t", Container: dockerID, Unit: "docker-" + dockerID + ".scope"},
			"sendmail[3002]", "container 3f2a9c1b7d4e"},
		{"LXC container by name",
			store.Process{PID: 3003, Comm: "curl", Cmdline: "curl smtp://mx.example.test", Container: "web01"},
			"curl[3003]", "container web01"},
		{"pid and comm only (the bpf backend, the process gone)",
			store.Process{PID: 4000, Comm: "nc"},
			"nc[4000]", ""},
		{"pid only", store.Process{PID: 4001}, "pid 4001", ""},
		{"nothing known (nft)", store.Process{}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ProcessLabel(tt.p); got != tt.label {
				t.Errorf("ProcessLabel(%+v) = %q, want %q", tt.p, got, tt.label)
			}
			if got := Source(tt.p); got != tt.source {
				t.Errorf("Source(%+v) = %q, want %q", tt.p, got, tt.source)
			}
		})
	}
}
