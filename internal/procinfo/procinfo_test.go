package procinfo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeProc writes /proc/PID's comm, cmdline, cgroup, exe and cwd under a temp
// root, as the kernel shows them.
func fakeProc(t *testing.T, pid, comm, cmdline, cgroup, exe, cwd string) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, pid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"comm": comm + "\n", "cmdline": cmdline, "cgroup": cgroup} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{"exe": exe, "cwd": cwd} {
		if target == "" {
			continue
		}
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestRead(t *testing.T) {
	long := "/usr/bin/php8.2\x00" + strings.Repeat("x", 300) + "\x00"
	tests := []struct {
		name                            string
		comm, cmdline, cgroup, exe, cwd string
		want                            Info
	}{
		{
			name: "php-fpm worker of a pool, cgroup v2",
			comm: "php-fpm8.2", cmdline: "php-fpm: pool www\x00\x00\x00\x00\x00\x00",
			cgroup: "0::/system.slice/php8.2-fpm.service\n", exe: "/usr/sbin/php-fpm8.2", cwd: "/",
			want: Info{Comm: "php-fpm8.2", Exe: "/usr/sbin/php-fpm8.2", Cmdline: "php-fpm: pool www", Cwd: "/",
				Cgroup: "/system.slice/php8.2-fpm.service", Unit: "php8.2-fpm.service", Pool: "www"},
		},
		{
			name: "a cron job's script, hybrid hierarchy (systemd's named line)",
			comm: "perl", cmdline: "/usr/bin/perl\x00/home/alice/mailer.pl\x00--to\x00x@example.org\x00",
			cgroup: "12:cpuset:/\n1:name=systemd:/system.slice/cron.service\n0::/\n", exe: "/usr/bin/perl", cwd: "/home/alice",
			want: Info{Comm: "perl", Exe: "/usr/bin/perl", Cmdline: "/usr/bin/perl /home/alice/mailer.pl --to x@example.org",
				Cwd: "/home/alice", Cgroup: "/system.slice/cron.service", Unit: "cron.service"},
		},
		{
			name: "a login session: the user's slice",
			comm: "python3", cmdline: "python3\x00send.py\x00",
			cgroup: "0::/user.slice/user-1001.slice/session-4.scope\n", exe: "/usr/bin/python3.11", cwd: "/tmp",
			want: Info{Comm: "python3", Exe: "/usr/bin/python3.11", Cmdline: "python3 send.py", Cwd: "/tmp",
				Cgroup: "/user.slice/user-1001.slice/session-4.scope", Unit: "user-1001.slice"},
		},
		{
			name: "docker container",
			comm: "swaks", cmdline: "swaks\x00",
			cgroup: "0::/system.slice/docker-" + hex64 + ".scope\n",
			want: Info{Comm: "swaks", Cmdline: "swaks", Cgroup: "/system.slice/docker-" + hex64 + ".scope",
				Unit: "docker-" + hex64 + ".scope", Container: hex64},
		},
		{
			name: "cmdline cut at 256 bytes",
			comm: "php", cmdline: long, cgroup: "0::/\n",
			want: Info{Comm: "php", Cmdline: strings.ReplaceAll(long[:256], "\x00", " "), Cgroup: "/"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := fakeProc(t, "4242", tt.comm, tt.cmdline, tt.cgroup, tt.exe, tt.cwd)
			got, ok := Reader{Root: root}.Read(4242)
			if !ok {
				t.Fatalf("Read(4242) found no process under %s", root)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Read(4242) (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadGoneProcess(t *testing.T) {
	if got, ok := (Reader{Root: t.TempDir()}).Read(4242); ok || got != (Info{}) {
		t.Errorf("Read(4242) of a process that exited = %+v, %t; want nothing, false", got, ok)
	}
}

const hex64 = "3f4e8b2a9c1d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f"

func TestDerive(t *testing.T) {
	tests := []struct {
		cgroup            string
		wantUnit, wantCtr string
	}{
		{"/system.slice/php8.2-fpm.service", "php8.2-fpm.service", ""},
		{"/system.slice/cron.service", "cron.service", ""},
		{"/user.slice/user-1001.slice/session-3.scope", "user-1001.slice", ""},
		{"/user.slice/user-1001.slice/user@1001.service/app.slice/mailer.service", "mailer.service", ""},
		{"/system.slice/docker-" + hex64 + ".scope", "docker-" + hex64 + ".scope", hex64},
		{"/docker/" + hex64, "", hex64},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_4e5f.slice/cri-containerd-" + hex64 + ".scope", "cri-containerd-" + hex64 + ".scope", hex64},
		{"/kubepods/burstable/pod0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d/" + hex64, "", hex64},
		{"/kubepods.slice/kubepods-pod0a1b.slice/crio-" + hex64 + ".scope", "crio-" + hex64 + ".scope", hex64},
		{"/machine.slice/libpod-" + hex64 + ".scope/container", "libpod-" + hex64 + ".scope", hex64},
		{"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + hex64 + ".scope/container", "libpod-" + hex64 + ".scope", hex64},
		{"/machine.slice/libpod-conmon-" + hex64 + ".scope", "libpod-conmon-" + hex64 + ".scope", ""},
		{"/lxc.payload.web01", "", "web01"},
		{"/lxc.payload.web01/system.slice/postfix.service", "postfix.service", "web01"},
		{"/lxc/web02", "", "web02"},
		{"/", "", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		if got := Unit(tt.cgroup); got != tt.wantUnit {
			t.Errorf("Unit(%q) = %q, want %q", tt.cgroup, got, tt.wantUnit)
		}
		if got := Container(tt.cgroup); got != tt.wantCtr {
			t.Errorf("Container(%q) = %q, want %q", tt.cgroup, got, tt.wantCtr)
		}
	}
}

func TestPool(t *testing.T) {
	for cmdline, want := range map[string]string{
		"php-fpm: pool www":                                       "www",
		"php-fpm: pool alice_example_org   ":                      "alice_example_org",
		"php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)": "",
		"/usr/bin/php script.php":                                 "",
		"":                                                        "",
	} {
		if got := Pool(cmdline); got != want {
			t.Errorf("Pool(%q) = %q, want %q", cmdline, got, want)
		}
	}
}
