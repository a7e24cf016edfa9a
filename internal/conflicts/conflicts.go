// Package conflicts finds other tools that also block outgoing SMTP on this
// host: CSF's SMTP_BLOCK (its SMTPOUTPUT chain), cPanel's SMTP Restrictions
// (the smtpmailgidonly tweak and its nat OUTPUT REDIRECT of 25, 465 and 587)
// and Imunify360's SMTP Traffic Management. Each silently overrides
// smtpguard's allow list: a user smtpguard allows is still refused by the
// other tool. It only reads; it never changes another tool's rules.
package conflicts

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Conflict is another tool's SMTP block, what it means and how to end it.
type Conflict struct {
	Tool   string `json:"tool"`
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
}

// Detector looks for conflicting SMTP blocks.
type Detector struct {
	// Root is where configuration files are read ("" is /).
	Root string
	// Run runs a rules dump such as iptables-save; nil runs it for real,
	// bounded in time. A missing binary is no conflict.
	Run func(ctx context.Context, name string, args ...string) ([]byte, error)
}

// dumps are the rules listings to read, one per iptables flavour: a host may
// have rules in the legacy tables and in iptables-nft's at once.
var dumps = []struct{ name, flavour string }{
	{"iptables-legacy-save", "iptables (legacy)"},
	{"iptables-nft-save", "iptables (nft)"},
	{"ip6tables-legacy-save", "ip6tables (legacy)"},
	{"ip6tables-nft-save", "ip6tables (nft)"},
}

// Detect lists every conflicting SMTP block it finds, the kernel's rules
// first, then configuration files that say a block is on.
func (d Detector) Detect(ctx context.Context) []Conflict {
	var out []Conflict
	add := func(c Conflict) {
		if !slices.ContainsFunc(out, func(o Conflict) bool { return o.Tool == c.Tool && o.Detail == c.Detail }) {
			out = append(out, c)
		}
	}
	for _, dump := range dumps {
		// Without -t, iptables-save lists only the tables that exist:
		// naming one would load and create it (legacy nat, say), which
		// changes another tool's state just by looking.
		all, _ := d.run(ctx, dump.name)
		filter, nat := section(all, "filter"), section(all, "nat")
		if smtpOutputActive(filter) {
			add(Conflict{Tool: "csf",
				Detail: "CSF's SMTPOUTPUT chain is active in " + dump.flavour + ": users smtpguard allows are still refused by CSF",
				Fix:    csfFix})
		}
		if smtpRedirect(nat) {
			add(Conflict{Tool: "cpanel",
				Detail: "a nat OUTPUT rule in " + dump.flavour + " redirects outgoing SMTP (25, 465, 587) to this host, as cPanel's SMTP Restrictions do: connections smtpguard allows still end at the local MTA",
				Fix:    cpanelFix})
		}
	}
	if on, _ := csfBlockOn(d.path("/etc/csf/csf.conf")); on {
		add(Conflict{Tool: "csf",
			Detail: "/etc/csf/csf.conf has SMTP_BLOCK = \"1\": CSF refuses SMTP connections of users it does not allow itself",
			Fix:    csfFix})
	}
	if _, err := os.Lstat(d.path("/var/cpanel/smtpgidonlytweak")); err == nil {
		add(Conflict{Tool: "cpanel",
			Detail: "cPanel's SMTP Restrictions are enabled (/var/cpanel/smtpgidonlytweak): only root, the MTA and Mailman may connect, whatever smtpguard allows",
			Fix:    cpanelFix})
	}
	if imunifyBlockOn(d.path("/etc/sysconfig/imunify360/imunify360.config")) {
		add(Conflict{Tool: "imunify360",
			Detail: "Imunify360's SMTP blocking is enabled (SMTP_BLOCKING.enable): users smtpguard allows may still be refused by Imunify360",
			Fix:    `imunify360-agent config update '{"SMTP_BLOCKING": {"enable": false}}' (import its settings first with 'smtpguard import --from-imunify FILE')`})
	}
	return out
}

const (
	csfFix    = `set SMTP_BLOCK = "0" in /etc/csf/csf.conf and run 'csf -r' (import its settings first with 'smtpguard import --from-csf /etc/csf/csf.conf')`
	cpanelFix = "WHM » Security Center » SMTP Restrictions » Disable, or '/scripts/smtpmailgidonly off' (import first with 'smtpguard import --from-cpanel')"
)

func (d Detector) path(p string) string {
	if d.Root == "" {
		return p
	}
	return filepath.Join(d.Root, p)
}

func (d Detector) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	if d.Run != nil {
		return d.Run(ctx, name, args...)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, path, args...).Output()
}

// section returns one table's part of an iptables-save dump, from its
// "*table" line to its COMMIT.
func section(dump []byte, table string) []byte {
	var out bytes.Buffer
	in := false
	for line := range lines(dump) {
		switch {
		case strings.HasPrefix(line, "*"):
			in = line == "*"+table
		case in && line == "COMMIT":
			in = false
		case in:
			out.WriteString(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

// smtpOutputActive reports whether an iptables-save dump has CSF's
// SMTPOUTPUT chain with rules and a jump to it from OUTPUT.
func smtpOutputActive(dump []byte) bool {
	jumped, filled := false, false
	for line := range lines(dump) {
		switch {
		case strings.HasPrefix(line, "-A OUTPUT ") && strings.Contains(line, "-j SMTPOUTPUT"):
			jumped = true
		case strings.HasPrefix(line, "-A SMTPOUTPUT "):
			filled = true
		}
	}
	return jumped && filled
}

// smtpRedirect reports whether a nat dump redirects outgoing SMTP ports.
func smtpRedirect(dump []byte) bool {
	for line := range lines(dump) {
		if !strings.HasPrefix(line, "-A OUTPUT ") || !strings.Contains(line, "-j REDIRECT") {
			continue
		}
		for _, f := range strings.Fields(line) {
			for _, port := range strings.Split(f, ",") {
				if port == "25" || port == "465" || port == "587" {
					return true
				}
			}
		}
	}
	return false
}

func lines(b []byte) func(func(string) bool) {
	return func(yield func(string) bool) {
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if !yield(strings.TrimSpace(sc.Text())) {
				return
			}
		}
	}
}

// csfBlockOn reads SMTP_BLOCK from csf.conf.
func csfBlockOn(path string) (bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	for line := range lines(data) {
		key, val, ok := strings.Cut(line, "=")
		if ok && strings.TrimSpace(key) == "SMTP_BLOCK" {
			return strings.Trim(strings.TrimSpace(val), `"'`) == "1", nil
		}
	}
	return false, errors.New("no SMTP_BLOCK")
}

// imunifyBlockOn reads SMTP_BLOCKING.enable from Imunify360's YAML
// configuration.
func imunifyBlockOn(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var doc struct {
		SMTP struct {
			Enable bool `yaml:"enable"`
		} `yaml:"SMTP_BLOCKING"`
	}
	return yaml.Unmarshal(data, &doc) == nil && doc.SMTP.Enable
}
