//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// csfRules is the shape of CSF's SMTP_BLOCK and Docker's chains in
// iptables-save form.
const csfRules = `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:SMTPOUTPUT - [0:0]
:LOCALOUTPUT - [0:0]
-A OUTPUT -o lo -j ACCEPT
-A OUTPUT -j LOCALOUTPUT
-A OUTPUT -p tcp -m multiport --dports 25,465,587 -j SMTPOUTPUT
-A LOCALOUTPUT -p tcp --dport 53 -j ACCEPT
-A SMTPOUTPUT -m owner --uid-owner 0 -j RETURN
-A SMTPOUTPUT -j REJECT --reject-with icmp-port-unreachable
COMMIT
`

const dockerRules = `*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
COMMIT
*filter
:FORWARD ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-USER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A DOCKER-USER -j RETURN
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
COMMIT
`

const firewalldTable = `table inet firewalld {
	chain filter_OUTPUT {
		type filter hook output priority filter + 10; policy accept;
		oifname "lo" accept
		ct state established,related accept
	}
	chain filter_INPUT {
		type filter hook input priority filter + 10; policy accept;
		tcp dport 22 accept
	}
}
table inet f2b-table {
	set addr-set-sshd {
		type ipv4_addr
	}
	chain f2b-chain {
		type filter hook input priority filter - 1; policy accept;
		ip saddr @addr-set-sshd reject
	}
}
`

var chainCounters = regexp.MustCompile(`\[\d+:\d+\]`)

// Real servers run CSF, firewalld, Docker and fail2ban beside smtpguard:
// whatever smtpguard does leaves their rules as they were, a flush by
// nftables.service is repaired, and status names the other SMTP block.
func TestPrivilegedCoexistence(t *testing.T) {
	w := newWorld(t)
	for _, tool := range []string{"iptables-nft-restore", "iptables-legacy-restore", "iptables-nft-save", "iptables-legacy-save"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: install Debian's iptables package (make test does)", tool)
		}
	}
	dir := t.TempDir()
	load := func(restore, rules string) {
		t.Helper()
		path := filepath.Join(dir, restore)
		if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := w.client.Command(restore, "--noflush", path)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", restore, err, out)
		}
	}
	load("iptables-nft-restore", csfRules)
	load("iptables-nft-restore", dockerRules)
	load("iptables-legacy-restore", csfRules)
	nftFile := filepath.Join(dir, "firewalld.nft")
	if err := os.WriteFile(nftFile, []byte(firewalldTable), 0o644); err != nil {
		t.Fatal(err)
	}
	w.client.Exec(t, "nft", "-f", nftFile)

	snapshot := func() map[string]string {
		t.Helper()
		out := map[string]string{}
		for _, c := range [][]string{
			{"iptables-nft-save"}, {"iptables-legacy-save"}, {"ip6tables-nft-save"},
			{"nft", "list", "table", "inet", "firewalld"}, {"nft", "list", "table", "inet", "f2b-table"},
		} {
			b, err := w.client.Command(c[0], c[1:]...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, b)
			}
			var kept []string
			for _, line := range strings.Split(string(b), "\n") {
				if !strings.HasPrefix(line, "#") { // iptables-save's dated header
					kept = append(kept, chainCounters.ReplaceAllString(line, ""))
				}
			}
			out[strings.Join(c, " ")] = strings.Join(kept, "\n")
		}
		return out
	}
	before := snapshot()
	expectUnchanged := func(step string) {
		t.Helper()
		after := snapshot()
		for name, was := range before {
			if after[name] != was {
				t.Errorf("after %s, %s changed:\n%s\nwas:\n%s", step, name, after[name], was)
			}
		}
	}

	// fail2ban bans and unbans in its own table while smtpguard works.
	ctx, cancel := context.WithCancel(context.Background())
	var churn sync.WaitGroup
	churn.Go(func() {
		for i := 0; i < 400 && ctx.Err() == nil; i++ {
			addr := fmt.Sprintf("{ 198.51.100.%d }", i%250+1)
			w.client.Command("nft", "add", "element", "inet", "f2b-table", "addr-set-sshd", addr).Run()
			w.client.Command("nft", "delete", "element", "inet", "f2b-table", "addr-set-sshd", addr).Run()
		}
	})
	stopChurn := func() { cancel(); churn.Wait() }
	t.Cleanup(stopChurn)

	w.sgOK("enable", "--backend", "nft")
	w.sgOK("allow", "user", w.plain.Name)
	w.sgOK("set", "ports", "25,465,587,2525")
	w.sgOK("set", "mode", "log")
	w.sgOK("set", "mode", "reject")
	w.startDaemon(t)
	// What nftables.service does on reload; it also takes everyone else's
	// nft tables, which are theirs to restore, so compare after a reload
	// of theirs.
	w.client.Exec(t, "nft", "flush", "ruleset")
	w.waitUntil(t, "the daemon restores table inet smtpguard", 10*time.Second, func() bool { return w.kernelTable() != "" })
	stopChurn()
	load("iptables-nft-restore", csfRules)
	load("iptables-nft-restore", dockerRules)
	w.client.Exec(t, "nft", "-f", nftFile)
	expectUnchanged("enable, allow, set ports and mode, and a repair")

	var st struct {
		Conflicts []struct{ Tool, Detail, Fix string } `json:"conflicts"`
	}
	if err := json.Unmarshal([]byte(w.sgOK("status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	var tools []string
	for _, c := range st.Conflicts {
		tools = append(tools, c.Tool+": "+c.Detail)
		if c.Fix == "" {
			t.Errorf("conflict %+v has no fix", c)
		}
	}
	joined := strings.Join(tools, "\n")
	if !strings.Contains(joined, "csf: CSF's SMTPOUTPUT chain is active in iptables (nft)") || !strings.Contains(joined, "iptables (legacy)") {
		t.Errorf("status conflicts = %q, want CSF's chain named for iptables (nft) and (legacy)", joined)
	}
	if text := w.sgOK("status"); !strings.Contains(text, "Conflict:") || !strings.Contains(text, "SMTP_BLOCK") {
		t.Errorf("status text does not show the conflict and its fix:\n%s", text)
	}
	// The conflict is real: an allowed user is still refused, by CSF.
	if r := testutil.ConnectAs(t, w.client, &w.plain, "192.0.2.2:25")[0]; r.OK {
		t.Errorf("allowed user %s reached port 25 through CSF's SMTPOUTPUT reject; the test's CSF rules are not in force", w.plain.Name)
	}

	w.sgOK("disable")
	if w.kernelTable() != "" {
		t.Errorf("disable left table inet smtpguard")
	}
	expectUnchanged("disable")
}
