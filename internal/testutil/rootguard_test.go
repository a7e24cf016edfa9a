//go:build linux

package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCheckRootAttach(t *testing.T) {
	root, err := Cgroup2Root()
	if err != nil {
		t.Skipf("no cgroup2 mount to tell the root from a test cgroup: %v", err)
	}
	testCG := filepath.Join(root, CgroupPrefix+"0123abcd")
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	autoFile := file("auto.toml", "version = 1\nenabled = true\n")
	autoCG := file("autocg.toml", "version = 1\nenabled = true\ncgroup = \""+testCG+"\"\n")
	bpfRoot := file("bpfroot.yaml", "version: 1\nenabled: true\nbackend: bpf\ncgroup: "+root+"\n")
	nftFile := file("nft.toml", "version = 1\nenabled = true\nbackend = \"nft\"\n")
	disabled := file("off.toml", "version = 1\nenabled = false\n")
	tests := []struct {
		args []string
		ok   bool
	}{
		{[]string{"enable"}, false},
		{[]string{"--state-dir", "/tmp/x", "enable", "--json"}, false},
		{[]string{"enable", "--backend", "auto"}, false},
		{[]string{"enable", "--backend=bpf"}, false},
		{[]string{"enable", "--backend", "bpf", "--cgroup", root}, false},
		{[]string{"enable", "--cgroup", "/sys/fs/cgroup/system.slice"}, false},
		{[]string{"enable", "--cgroup", filepath.Join(root, "..")}, false},
		{[]string{"enable", "--backend", "nft"}, true},
		{[]string{"--state-dir", "enable", "enable", "--backend", "nft"}, true},
		{[]string{"enable", "--cgroup", testCG}, true},
		{[]string{"enable", "--backend", "bpf", "--cgroup=" + filepath.Join(testCG, "child")}, true},
		{[]string{"serve", "--listen", ""}, false},
		{[]string{"serve", "--backend", "nft"}, true},
		{[]string{"serve", "--cgroup", testCG}, true},
		{[]string{"import", autoFile}, false},
		{[]string{"import", "--dry-run", autoFile}, false},
		{[]string{"import", bpfRoot}, false},
		{[]string{"import", autoCG}, true},
		{[]string{"import", nftFile}, true},
		{[]string{"import", disabled}, true},
		{[]string{"import", filepath.Join(dir, "missing.toml")}, true},
		{[]string{"import", "--from-csf", autoFile}, true},
		{[]string{"status", "--json"}, true},
		{[]string{"disable"}, true},
	}
	for _, tt := range tests {
		err := CheckRootAttach(tt.args)
		if (err == nil) != tt.ok {
			t.Errorf("CheckRootAttach(%q) = %v, want ok %v", tt.args, err, tt.ok)
		}
	}
}
