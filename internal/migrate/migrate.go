// Package migrate reads the SMTP restriction settings of the tools hosting
// servers use today — CSF's SMTP_BLOCK, cPanel & WHM's SMTP Restrictions and
// Imunify360's SMTP Traffic Management — and turns them into a smtpguard
// policy file, so an administrator switching over imports them in one command
// instead of retyping them. It only parses; the engine applies the result like
// any other policy file.
package migrate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// Result is a foreign configuration as a smtpguard policy file, with what
// could not be carried over or was interpreted, one sentence each.
type Result struct {
	File  policy.File
	Notes []string
}

// maxConfig bounds what is read of a foreign configuration file.
const maxConfig = 4 << 20

func newFile() policy.File {
	f := policy.ToFile(policy.Default())
	f.Backend = policy.BackendAuto
	// What the foreign tool closes when its configuration names no ports
	// (CSF's SMTP_PORTS, Imunify360's ports and cPanel all default to
	// these three): an import keeps what the old setup enforced, and
	// smtpguard's own newer default (with 2525) is not slipped in.
	f.Ports = nil
	for _, port := range policy.LegacyPorts() {
		f.Ports = append(f.Ports, int(port))
	}
	return f
}

// readFile reads a configuration file, bounded, naming it in errors.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxConfig+1)); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if buf.Len() > maxConfig {
		return nil, fmt.Errorf("%s is larger than %d bytes: is it the right file?", path, maxConfig)
	}
	return buf.Bytes(), nil
}

// CSF reads csf.conf (KEY = "value" lines) and maps SMTP_BLOCK,
// SMTP_ALLOWUSER, SMTP_ALLOWGROUP, SMTP_PORTS, SMTP_ALLOWLOCAL and
// SMTP_REDIRECT.
func CSF(path string) (Result, error) {
	data, err := readFile(path)
	if err != nil {
		return Result{}, fmt.Errorf("read CSF configuration: %w", err)
	}
	vals, err := parseCSF(data)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", path, err)
	}
	if _, ok := vals["SMTP_BLOCK"]; !ok {
		return Result{}, fmt.Errorf("%s has no SMTP_BLOCK setting: is it CSF's csf.conf?", path)
	}
	r := Result{File: newFile()}
	r.File.Enabled = vals["SMTP_BLOCK"] == "1"
	if v, ok := vals["SMTP_PORTS"]; ok {
		ports, err := portList(v)
		if err != nil {
			return Result{}, fmt.Errorf("%s: SMTP_PORTS: %w", path, err)
		}
		r.File.Ports = ports
	}
	if v, ok := vals["SMTP_ALLOWLOCAL"]; ok {
		r.File.AllowLocal = v == "1"
	}
	r.File.AllowedUsers = nameList(vals["SMTP_ALLOWUSER"])
	r.File.AllowedGroups = nameList(vals["SMTP_ALLOWGROUP"])
	if vals["SMTP_REDIRECT"] == "1" {
		r.File.Mode = string(policy.ModeRedirect)
		r.Notes = append(r.Notes, "SMTP_REDIRECT: CSF redirects blocked connections to the local MTA's port 25; smtpguard's redirect mode keeps the port the script asked for (25, 465 or 587 on 127.0.0.1 / ::1), where the MTA must listen")
	}
	r.Notes = append(r.Notes,
		"CSF applies SMTP_BLOCK to IPv6 only with IPV6 = \"1\"; smtpguard restricts IPv4 and IPv6 alike",
		"CSF always allows root and the MTA's account; smtpguard allows them too, and the mailing-list manager's, whenever they are installed")
	if v := vals["SMTP_ALLOW_OUTPUT"]; v != "" {
		r.Notes = append(r.Notes, "SMTP_ALLOW_OUTPUT (remote addresses everyone may reach) has no equivalent: add an exception per user or group with 'smtpguard allow ... --to DEST'")
	}
	return r, nil
}

// parseCSF reads KEY = "value" lines, ignoring comments and blank lines.
// Errors name the line, never its contents.
func parseCSF(data []byte) (map[string]string, error) {
	vals := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), maxConfig)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d is not KEY = \"value\"", n)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if i := strings.Index(val, "#"); i >= 0 && !strings.HasPrefix(val, `"`) {
			val = strings.TrimSpace(val[:i])
		}
		if uq, err := strconv.Unquote(val); err == nil {
			val = uq
		} else if len(val) >= 2 && val[0] == '"' {
			if end := strings.IndexByte(val[1:], '"'); end >= 0 {
				val = val[1 : end+1] // a comment after the closing quote
			} else {
				return nil, fmt.Errorf("line %d (%s): unterminated quote", n, key)
			}
		}
		vals[key] = val
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return vals, nil
}

// cpanelPorts are the ports cPanel's SMTP Restrictions close.
var cpanelPorts = []int{25, 465, 587}

// CPanel reads cPanel & WHM's SMTP Restrictions under root ("/" on the
// server itself): the tweak's flag file /var/cpanel/smtpgidonlytweak (what
// WHM itself reads), the smtpmailgidonly key of /var/cpanel/cpanel.config,
// and /var/cpanel/smtpmailgidonly/conf.yaml when present.
func CPanel(root string) (Result, error) {
	if root == "" {
		root = "/"
	}
	at := func(p string) string { return filepath.Join(root, p) }
	r := Result{File: newFile()}
	r.File.Ports = slices.Clone(cpanelPorts)
	_, flagErr := os.Lstat(at("/var/cpanel/smtpgidonlytweak"))
	flag := flagErr == nil
	cfgPath := at("/var/cpanel/cpanel.config")
	cfg, cfgErr := readFile(cfgPath)
	if cfgErr != nil && !errors.Is(cfgErr, os.ErrNotExist) {
		return Result{}, fmt.Errorf("read cPanel configuration: %w", cfgErr)
	}
	if cfgErr != nil && !flag {
		return Result{}, fmt.Errorf("no cPanel configuration under %s (neither %s nor %s): give the root of a cPanel server's files, or run on one",
			root, cfgPath, at("/var/cpanel/smtpgidonlytweak"))
	}
	setting, hasSetting := keyValue(cfg, "smtpmailgidonly")
	switch {
	case hasSetting && (setting == "1") != flag:
		r.Notes = append(r.Notes, fmt.Sprintf("cpanel.config says smtpmailgidonly=%s but the tweak's flag file %s; WHM goes by the flag file, and so does this import", setting, map[bool]string{true: "exists", false: "is absent"}[flag]))
	}
	r.File.Enabled = flag
	r.Notes = append(r.Notes, "cPanel lets only root, the MTA (Exim) and Mailman connect; smtpguard allows the same accounts whenever they are installed, and the users and groups you add with 'smtpguard allow'")
	confPath := at("/var/cpanel/smtpmailgidonly/conf.yaml")
	conf, err := readFile(confPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return Result{}, fmt.Errorf("read cPanel SMTP Restrictions settings: %w", err)
	default:
		notes, err := cpanelConf(conf, &r.File)
		if err != nil {
			return Result{}, fmt.Errorf("%s: %w", confPath, err)
		}
		r.Notes = append(r.Notes, notes...)
	}
	return r, nil
}

// cpanelConf takes allowed users and groups from conf.yaml's lists whose key
// names users or groups, and names every other key as not carried over.
func cpanelConf(data []byte, f *policy.File) (notes []string, err error) {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, errors.New("not a YAML mapping")
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		names, isList := stringList(doc[k])
		lower := strings.ToLower(k)
		switch {
		case isList && strings.Contains(lower, "group"):
			f.AllowedGroups = append(f.AllowedGroups, names...)
		case isList && strings.Contains(lower, "user"):
			f.AllowedUsers = append(f.AllowedUsers, names...)
		default:
			notes = append(notes, fmt.Sprintf("conf.yaml key %q has no smtpguard equivalent and was not imported", k))
		}
	}
	return notes, nil
}

// keyValue finds key=value in cPanel's flat configuration format.
func keyValue(data []byte, key string) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), maxConfig)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// imunifySMTP is Imunify360's SMTP_BLOCKING section.
type imunifySMTP struct {
	Enable      *bool    `json:"enable"`
	Ports       []int    `json:"ports"`
	AllowUsers  []string `json:"allow_users"`
	AllowGroups []string `json:"allow_groups"`
	AllowLocal  *bool    `json:"allow_local"`
	Redirect    *bool    `json:"redirect"`
}

// Imunify reads the JSON that `imunify360-agent config show --json` prints
// (the SMTP_BLOCKING section, under "items" or at the top).
func Imunify(path string) (Result, error) {
	data, err := readFile(path)
	if err != nil {
		return Result{}, fmt.Errorf("read Imunify360 configuration: %w", err)
	}
	var doc struct {
		Items *struct {
			SMTP *imunifySMTP `json:"SMTP_BLOCKING"`
		} `json:"items"`
		SMTP *imunifySMTP `json:"SMTP_BLOCKING"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return Result{}, fmt.Errorf("%s is not JSON (error at byte %d): save the output of 'imunify360-agent config show --json'", path, se.Offset)
		}
		return Result{}, fmt.Errorf("%s: SMTP_BLOCKING has an unexpected shape: save the output of 'imunify360-agent config show --json'", path)
	}
	s := doc.SMTP
	if doc.Items != nil && doc.Items.SMTP != nil {
		s = doc.Items.SMTP
	}
	if s == nil || s.Enable == nil {
		return Result{}, fmt.Errorf("%s has no SMTP_BLOCKING.enable: save the output of 'imunify360-agent config show --json'", path)
	}
	r := Result{File: newFile()}
	r.File.Enabled = *s.Enable
	if s.Ports != nil {
		for _, p := range s.Ports {
			if p < 1 || p > 65535 {
				return Result{}, fmt.Errorf("%s: SMTP_BLOCKING.ports: %d is not a port", path, p)
			}
		}
		r.File.Ports = slices.Clone(s.Ports)
	}
	if s.AllowLocal != nil {
		r.File.AllowLocal = *s.AllowLocal
	}
	r.File.AllowedUsers = append([]string{}, s.AllowUsers...)
	r.File.AllowedGroups = append([]string{}, s.AllowGroups...)
	if s.Redirect != nil && *s.Redirect {
		r.File.Mode = string(policy.ModeRedirect)
		r.Notes = append(r.Notes, "redirect: blocked connections go to the local MTA on the port the script asked for (127.0.0.1 / ::1)")
	}
	return r, nil
}

// portList parses CSF's "25,465,587" (ranges "a:b" are expanded).
func portList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(f, ":")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 1 || a > 65535 {
			return nil, fmt.Errorf("%q is not a port", f)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b > 65535 {
				return nil, fmt.Errorf("%q is not a port range", f)
			}
			if b-a > 64 {
				return nil, fmt.Errorf("port range %q is wider than 64 ports", f)
			}
		}
		for p := a; p <= b; p++ {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no ports")
	}
	return out, nil
}

// nameList splits CSF's comma-separated user or group names.
func nameList(s string) []string {
	out := []string{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func stringList(v any) ([]string, bool) {
	items, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, ok := it.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// Unknown lists the allowed users and groups of f that do not exist in dir,
// as "user NAME" / "group NAME", in file order.
func Unknown(f policy.File, dir *policy.Directory) []string {
	var out []string
	for _, u := range f.AllowedUsers {
		if _, err := dir.ResolvePrincipal(policy.KindUser, u); err != nil {
			out = append(out, "user "+u)
		}
	}
	for _, g := range f.AllowedGroups {
		if _, err := dir.ResolvePrincipal(policy.KindGroup, g); err != nil {
			out = append(out, "group "+g)
		}
	}
	return out
}

// DropUnknown removes from f the allowed users and groups that do not exist
// in dir and returns what it removed.
func DropUnknown(f *policy.File, dir *policy.Directory) []string {
	dropped := Unknown(*f, dir)
	keep := func(kind policy.PrincipalKind, names []string) []string {
		out := []string{}
		for _, n := range names {
			if _, err := dir.ResolvePrincipal(kind, n); err == nil {
				out = append(out, n)
			}
		}
		return out
	}
	f.AllowedUsers = keep(policy.KindUser, f.AllowedUsers)
	f.AllowedGroups = keep(policy.KindGroup, f.AllowedGroups)
	return dropped
}
