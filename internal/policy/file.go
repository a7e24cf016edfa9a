package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/BurntSushi/toml"
	"go.yaml.in/yaml/v3"
)

// FileVersion is the policy file format version this build reads and writes.
const FileVersion = 1

// Format is a policy file syntax.
type Format string

// The supported policy file syntaxes.
const (
	FormatTOML Format = "toml"
	FormatYAML Format = "yaml"
)

// ParseFormat parses a --format value.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "toml":
		return FormatTOML, nil
	case "yaml", "yml":
		return FormatYAML, nil
	}
	return "", fmt.Errorf("unknown format %q: use toml or yaml", s)
}

// FormatForPath picks the syntax from a file name: .yaml/.yml is YAML, anything
// else TOML.
func FormatForPath(path string) Format {
	lower := strings.ToLower(path)
	if strings.HasSuffix(lower, ".yaml") || strings.HasSuffix(lower, ".yml") {
		return FormatYAML
	}
	return FormatTOML
}

// File is the exported policy, the unit fleets version and distribute.
type File struct {
	Version       int             `toml:"version" yaml:"version"`
	Enabled       bool            `toml:"enabled" yaml:"enabled"`
	Backend       string          `toml:"backend" yaml:"backend"`
	Mode          string          `toml:"mode" yaml:"mode"`
	Ports         []int           `toml:"ports" yaml:"ports,flow"`
	AllowLocal    bool            `toml:"allow_local" yaml:"allow_local"`
	AllowedUsers  []string        `toml:"allowed_users" yaml:"allowed_users"`
	AllowedGroups []string        `toml:"allowed_groups" yaml:"allowed_groups"`
	Exceptions    []FileException `toml:"exceptions,omitempty" yaml:"exceptions,omitempty"`
}

// FileException is one scoped exception in a policy file: exactly one of User
// and Group, a destination, and optionally the ports (default: all restricted).
type FileException struct {
	User  string `toml:"user,omitempty" yaml:"user,omitempty"`
	Group string `toml:"group,omitempty" yaml:"group,omitempty"`
	To    string `toml:"to" yaml:"to"`
	Ports []int  `toml:"ports,omitempty" yaml:"ports,omitempty,flow"`
}

// ToFile converts a policy to its file form.
func ToFile(p Policy) File {
	f := File{
		Version:       FileVersion,
		Enabled:       p.Enabled,
		Backend:       p.Backend,
		Mode:          string(p.Mode),
		AllowLocal:    p.AllowLocal,
		AllowedUsers:  []string{},
		AllowedGroups: []string{},
	}
	for _, port := range p.Ports {
		f.Ports = append(f.Ports, int(port))
	}
	for _, u := range p.Users {
		f.AllowedUsers = append(f.AllowedUsers, u.Ref())
	}
	for _, g := range p.Groups {
		f.AllowedGroups = append(f.AllowedGroups, g.Ref())
	}
	for _, e := range p.Exceptions {
		fe := FileException{To: e.Destination}
		if e.Principal.Kind == KindGroup {
			fe.Group = e.Principal.Ref()
		} else {
			fe.User = e.Principal.Ref()
		}
		for _, port := range e.Ports {
			fe.Ports = append(fe.Ports, int(port))
		}
		f.Exceptions = append(f.Exceptions, fe)
	}
	return f
}

// Encode writes the policy file in the given syntax.
func (f File) Encode(format Format) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# smtpguard policy; apply with: smtpguard import FILE\n")
	switch format {
	case FormatYAML:
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(f); err != nil {
			return nil, fmt.Errorf("encode yaml: %w", err)
		}
	default:
		if err := toml.NewEncoder(&buf).Encode(f); err != nil {
			return nil, fmt.Errorf("encode toml: %w", err)
		}
	}
	return buf.Bytes(), nil
}

// DecodeFile parses a policy file strictly: unknown keys, trailing documents and
// a missing or unsupported version are errors. Keys left out take the defaults
// of a fresh install.
func DecodeFile(data []byte, format Format) (File, error) {
	def := ToFile(Default())
	def.Version = 0
	f := def
	switch format {
	case FormatYAML:
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil {
			return File{}, fmt.Errorf("parse yaml: %w", err)
		}
		var extra any
		if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
			return File{}, errors.New("parse yaml: more than one document in the file")
		}
	default:
		md, err := toml.Decode(string(data), &f)
		if err != nil {
			return File{}, fmt.Errorf("parse toml: %w", err)
		}
		if undec := md.Undecoded(); len(undec) > 0 {
			keys := make([]string, len(undec))
			for i, k := range undec {
				keys[i] = k.String()
			}
			return File{}, fmt.Errorf("parse toml: unknown keys: %s", strings.Join(keys, ", "))
		}
	}
	if f.Version == 0 {
		return File{}, fmt.Errorf("version: missing: the file must start with version = %d", FileVersion)
	}
	if f.Version != FileVersion {
		return File{}, fmt.Errorf("version: %d is not supported by this build (it reads version %d)", f.Version, FileVersion)
	}
	if f.Backend == "" {
		f.Backend = BackendAuto
	}
	return f, nil
}

// Policy validates the file against the system accounts and converts it. All
// problems are reported at once, each with its field path.
func (f File) Policy(dir *Directory) (Policy, error) {
	p := Policy{Enabled: f.Enabled, Backend: f.Backend, AllowLocal: f.AllowLocal}
	var errs []error
	if !validBackendName(f.Backend) {
		errs = append(errs, fmt.Errorf("backend: invalid backend name %q: use %s", f.Backend, strings.Join(SupportedBackends(), " or ")))
	}
	if m, err := ParseMode(f.Mode); err != nil {
		errs = append(errs, fmt.Errorf("mode: %w", err))
	} else {
		p.Mode = m
	}
	for i, n := range f.Ports {
		port, err := checkPort(int64(n))
		if err != nil {
			errs = append(errs, fmt.Errorf("ports[%d]: %w", i, err))
			continue
		}
		p.Ports = append(p.Ports, port)
	}
	if len(errs) == 0 {
		ports, err := normalizePorts(p.Ports)
		if err != nil {
			errs = append(errs, fmt.Errorf("ports: %w", err))
		}
		p.Ports = ports
	}
	// A set rather than p.Allow, which scans the list: importing 10,000
	// users must not cost 50 million comparisons (issue 12).
	allow := func(field string, kind PrincipalKind, refs []string) []Principal {
		var out []Principal
		seen := newSameSet()
		for i, ref := range refs {
			pr, err := dir.ResolvePrincipal(kind, ref)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", field, i, err))
				continue
			}
			if seen.add(pr) {
				errs = append(errs, fmt.Errorf("%s[%d]: %s: %w", field, i, pr, ErrAlreadyAllowed))
				continue
			}
			out = append(out, pr)
		}
		return out
	}
	p.Users = allow("allowed_users", KindUser, f.AllowedUsers)
	p.Groups = allow("allowed_groups", KindGroup, f.AllowedGroups)
	for i, fe := range f.Exceptions {
		e, err := fe.exception(dir, p.Ports)
		if err != nil {
			errs = append(errs, fmt.Errorf("exceptions[%d]: %w", i, err))
			continue
		}
		if err := p.AddException(e); err != nil {
			errs = append(errs, fmt.Errorf("exceptions[%d]: %w", i, err))
		}
	}
	if err := Validate(p, dir); err != nil && len(errs) == 0 {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return Policy{}, errors.Join(errs...)
	}
	return p, nil
}

func (fe FileException) exception(dir *Directory, restricted []uint16) (Exception, error) {
	var pr Principal
	var err error
	switch {
	case fe.User != "" && fe.Group != "":
		return Exception{}, errors.New("give either user or group, not both")
	case fe.User != "":
		pr, err = dir.ResolvePrincipal(KindUser, fe.User)
	case fe.Group != "":
		pr, err = dir.ResolvePrincipal(KindGroup, fe.Group)
	default:
		return Exception{}, errors.New("user or group missing")
	}
	if err != nil {
		return Exception{}, err
	}
	d, err := ParseDestination(fe.To)
	if err != nil {
		return Exception{}, fmt.Errorf("to: %w", err)
	}
	var ports []uint16
	for _, n := range fe.Ports {
		port, err := checkPort(int64(n))
		if err != nil {
			return Exception{}, fmt.Errorf("ports: %w", err)
		}
		ports = append(ports, port)
	}
	if len(ports) > 0 {
		if ports, err = normalizePorts(ports); err != nil {
			return Exception{}, fmt.Errorf("ports: %w", err)
		}
		if err := CheckExceptionPorts(ports, restricted); err != nil {
			return Exception{}, fmt.Errorf("ports: %w", err)
		}
	}
	return Exception{Principal: pr, Destination: d.Canonical, Ports: ports}, nil
}
