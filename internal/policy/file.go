package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"go.yaml.in/yaml/v3"
)

// FileVersion is the policy file format version this build reads and writes.
const FileVersion = 1

// badVersion marks a version key that is absent or did not decode.
const badVersion = math.MinInt

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
	Cgroup        string          `toml:"cgroup,omitempty" yaml:"cgroup,omitempty"`
	Mode          string          `toml:"mode" yaml:"mode"`
	Ports         []int           `toml:"ports" yaml:"ports,flow"`
	AllowLocal    bool            `toml:"allow_local" yaml:"allow_local"`
	AllowedUsers  []string        `toml:"allowed_users" yaml:"allowed_users"`
	AllowedGroups []string        `toml:"allowed_groups" yaml:"allowed_groups"`
	Exceptions    []FileException `toml:"exceptions,omitempty" yaml:"exceptions,omitempty"`
	// RateLimit is the default rate limit of every allowance ("100/h"; ""
	// or "off": none); UserRates and GroupRates give allowed users' and
	// groups' own ("off": none whatever the default), keyed as
	// allowed_users and allowed_groups name them.
	RateLimit  string            `toml:"rate_limit,omitempty" yaml:"rate_limit,omitempty" json:",omitempty"`
	UserRates  map[string]string `toml:"user_rates,omitempty" yaml:"user_rates,omitempty" json:",omitempty"`
	GroupRates map[string]string `toml:"group_rates,omitempty" yaml:"group_rates,omitempty" json:",omitempty"`
}

// FileException is one scoped exception in a policy file: exactly one of User
// and Group, a destination, and optionally the ports (default: all restricted).
type FileException struct {
	User  string `toml:"user,omitempty" yaml:"user,omitempty"`
	Group string `toml:"group,omitempty" yaml:"group,omitempty"`
	To    string `toml:"to" yaml:"to"`
	Ports []int  `toml:"ports,omitempty" yaml:"ports,omitempty,flow"`
	Rate  string `toml:"rate,omitempty" yaml:"rate,omitempty" json:",omitempty"`
}

// ToFile converts a policy to its file form.
func ToFile(p Policy) File {
	f := File{
		Version:       FileVersion,
		Enabled:       p.Enabled,
		Backend:       p.Backend,
		Cgroup:        p.Cgroup,
		Mode:          string(p.Mode),
		AllowLocal:    p.AllowLocal,
		AllowedUsers:  []string{},
		AllowedGroups: []string{},
	}
	for _, port := range p.Ports {
		f.Ports = append(f.Ports, int(port))
	}
	if !p.RateLimit.IsZero() {
		f.RateLimit = p.RateLimit.String()
	}
	for _, u := range p.Users {
		f.AllowedUsers = append(f.AllowedUsers, u.Ref())
		if u.Rate.Set {
			if f.UserRates == nil {
				f.UserRates = map[string]string{}
			}
			f.UserRates[u.Ref()] = u.Rate.String()
		}
	}
	for _, g := range p.Groups {
		f.AllowedGroups = append(f.AllowedGroups, g.Ref())
		if g.Rate.Set {
			if f.GroupRates == nil {
				f.GroupRates = map[string]string{}
			}
			f.GroupRates[g.Ref()] = g.Rate.String()
		}
	}
	for _, e := range p.Exceptions {
		fe := FileException{To: e.Destination, Rate: e.Rate.String()}
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

// DecodeFile parses a policy file strictly: unknown keys, trailing documents,
// a missing or unsupported version and a missing enabled are errors. Other
// keys left out take the defaults of a fresh install, except ports, which
// means LegacyPorts (25, 465, 587) as it always has.
//
// Errors name the line and, for an unknown key, the key, but never repeat
// what the file holds: import may be pointed at the wrong file
// (/etc/shadow), and its error lands in terminals and logs.
func DecodeFile(data []byte, format Format) (File, error) {
	f, _, err := DecodeFilePartial(data, format)
	if err != nil {
		return File{}, err
	}
	return f, nil
}

// DecodeFilePartial is DecodeFile that, when the syntax was readable
// (readable true), also returns what did decode, keys that failed keeping
// their defaults: import checks it too, to report every problem at once.
func DecodeFilePartial(data []byte, format Format) (f File, readable bool, err error) {
	def := ToFile(Default())
	def.Version = 0
	f = def
	// A version that fails to decode leaves this: its error is already said.
	f.Version = badVersion
	// keys holds the top-level keys present; decoders return it, with the
	// problems of single keys, whenever the syntax itself was readable, so
	// that every problem of the file is reported at once.
	var keys map[string]bool
	syntax := "toml"
	switch format {
	case FormatYAML:
		syntax = "yaml"
		keys, err = decodeYAML(data, &f)
	default:
		keys, err = decodeTOML(data, &f)
	}
	if keys == nil {
		return File{}, false, fmt.Errorf("parse %s: %w", syntax, err)
	}
	var errs []error
	if err != nil {
		errs = append(errs, fmt.Errorf("parse %s: %w", syntax, err))
	}
	switch {
	case !keys["version"] || f.Version == 0:
		errs = append(errs, fmt.Errorf("version: missing: the file must start with version = %d", FileVersion))
	case f.Version == badVersion: // present but not a number: said above
	case f.Version != FileVersion:
		errs = append(errs, fmt.Errorf("version: %d is not supported by this build (it reads version %d)", f.Version, FileVersion))
	}
	if !keys["enabled"] {
		// A file cut short (a truncated download) must not switch
		// enforcement off by leaving the key out.
		errs = append(errs, errors.New("enabled: missing: say enabled = true or enabled = false"))
	}
	if f.Backend == "" {
		f.Backend = BackendAuto
	}
	if !keys["ports"] {
		// Not the fresh install's default: version 1 files without ports
		// have always meant these three, and a fleet's file must not
		// restrict another port because smtpguard was upgraded.
		f.Ports = nil
		for _, port := range LegacyPorts() {
			f.Ports = append(f.Ports, int(port))
		}
	}
	return f, true, errors.Join(errs...)
}

// fileField is where a top-level key of a policy file goes, and what it
// wants, for errors that say so without showing the value.
func fileField(f *File, key string) (any, string, bool) {
	switch key {
	case "version":
		return &f.Version, "a number", true
	case "enabled":
		return &f.Enabled, "true or false", true
	case "backend":
		return &f.Backend, "a backend name", true
	case "cgroup":
		return &f.Cgroup, "a cgroup directory path", true
	case "mode":
		return &f.Mode, "reject, redirect, explain or log", true
	case "ports":
		return &f.Ports, "a list of port numbers", true
	case "allow_local":
		return &f.AllowLocal, "true or false", true
	case "allowed_users":
		return &f.AllowedUsers, "a list of user names or uids", true
	case "allowed_groups":
		return &f.AllowedGroups, "a list of group names or gids", true
	case "exceptions":
		return &f.Exceptions, "a list of exceptions (user or group, to, ports, rate)", true
	case "rate_limit":
		return &f.RateLimit, "a rate such as 100/h, or off", true
	case "user_rates":
		return &f.UserRates, "a table of allowed user = rate", true
	case "group_rates":
		return &f.GroupRates, "a table of allowed group = rate", true
	}
	return nil, "", false
}

// exceptionField is fileField for the keys of one exception.
func exceptionField(e *FileException, key string) (any, string, bool) {
	switch key {
	case "user":
		return &e.User, "a user name or uid", true
	case "group":
		return &e.Group, "a group name or gid", true
	case "to":
		return &e.To, "an address, CIDR prefix or host name", true
	case "ports":
		return &e.Ports, "a list of port numbers", true
	case "rate":
		return &e.Rate, "a rate such as 100/h, off or default", true
	}
	return nil, "", false
}

// keyName shows an unknown key in an error, quoted, when it looks like a key
// someone mistyped (a word of at most 32 letters, digits, '_' and '-').
// Anything else is more likely data (a password hash read as a YAML key) and
// is not shown.
func keyName(path, key string) string {
	if !keyLike.MatchString(key) {
		return "(not shown: not a word)"
	}
	return strconv.Quote(path + key)
}

var keyLike = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,31}$`)

// libraryLine finds the "line N" a parser's own error starts with; the rest
// of its text may quote the file, so only the number is kept.
func libraryLine(err error) string {
	m := lineNumber.FindStringSubmatch(err.Error())
	if m == nil {
		return ""
	}
	return "line " + m[1] + ": "
}

var lineNumber = regexp.MustCompile(`^(?:toml|yaml): line (\d+)`)

// decodeTOML fills f from a TOML file and reports which top-level keys it
// holds.
func decodeTOML(data []byte, f *File) (map[string]bool, error) {
	var raw map[string]toml.Primitive
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("line %d: not valid TOML (contents not shown)", pe.Position.Line)
		}
		return nil, fmt.Errorf("%snot valid TOML (contents not shown)", libraryLine(err))
	}
	keys := make(map[string]bool, len(raw))
	var errs []error
	var unknown []string
	for _, k := range md.Keys() {
		if len(k) != 1 {
			continue
		}
		name := k[0]
		ptr, want, ok := fileField(f, name)
		if !ok {
			unknown = append(unknown, keyName("", name))
			continue
		}
		keys[name] = true
		if err := md.PrimitiveDecode(raw[name], ptr); err != nil {
			errs = append(errs, fmt.Errorf("%s%s: want %s", libraryLine(err), name, want))
		}
	}
	// Keys inside known tables (an exception's) that nothing decoded.
	for _, k := range md.Undecoded() {
		if keys[k[0]] && len(k) > 1 {
			unknown = append(unknown, keyName(strings.Join(k[:len(k)-1], ".")+".", k[len(k)-1]))
		}
	}
	if len(unknown) > 0 {
		errs = append(errs, fmt.Errorf("unknown keys: %s", strings.Join(unknown, ", ")))
	}
	return keys, errors.Join(errs...)
}

// decodeYAML fills f from a YAML file and reports which top-level keys it
// holds. It walks the document itself so that every error can name a line
// and a key without quoting a value.
func decodeYAML(data []byte, f *File) (map[string]bool, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty")
		}
		return nil, fmt.Errorf("%snot valid YAML (contents not shown)", libraryLine(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one document in the file")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	keys := map[string]bool{}
	err := walkYAMLMapping(root, "", func(key string, value *yaml.Node) (any, string, bool) {
		ptr, want, ok := fileField(f, key)
		if ok {
			keys[key] = true
		}
		return ptr, want, ok
	}, func(key string, value *yaml.Node) error {
		switch {
		case key == "exceptions":
			return decodeYAMLExceptions(value, &f.Exceptions)
		case key == "enabled" && value.Kind == yaml.ScalarNode && value.Tag == "!!null":
			// "enabled:" with nothing after it decodes as false.
			return fmt.Errorf("line %d: enabled: want true or false", value.Line)
		}
		return errNotHandled
	})
	return keys, err
}

var errNotHandled = errors.New("not handled")

// walkYAMLMapping decodes each key of a mapping node into what field gives
// for it; special may decode a key itself (returning errNotHandled when it
// does not). Every problem is reported, each with its line.
func walkYAMLMapping(n *yaml.Node, path string, field func(string, *yaml.Node) (any, string, bool),
	special func(string, *yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		where := "the file"
		if path != "" {
			where = path
		}
		return fmt.Errorf("line %d: %s must be keys with values (key: value)", n.Line, where)
	}
	var errs []error
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Errorf("line %d: %skeys must be plain words", k.Line, path))
			continue
		}
		name := k.Value
		if first, dup := seen[name]; dup {
			errs = append(errs, fmt.Errorf("line %d: %s%s: given twice (first on line %d)", k.Line, path, name, first))
			continue
		}
		seen[name] = k.Line
		ptr, want, ok := field(name, v)
		if !ok {
			errs = append(errs, fmt.Errorf("line %d: unknown key %s", k.Line, keyName(path, name)))
			continue
		}
		if special != nil {
			if err := special(name, v); !errors.Is(err, errNotHandled) {
				if err != nil {
					errs = append(errs, err)
				}
				continue
			}
		}
		if err := v.Decode(ptr); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %s%s: want %s", v.Line, path, name, want))
		}
	}
	return errors.Join(errs...)
}

func decodeYAMLExceptions(n *yaml.Node, out *[]FileException) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		*out = nil
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("line %d: exceptions: want a list of exceptions (user or group, to, ports)", n.Line)
	}
	var errs []error
	list := make([]FileException, len(n.Content))
	for i, item := range n.Content {
		e := &list[i]
		path := fmt.Sprintf("exceptions[%d].", i)
		if err := walkYAMLMapping(item, path, func(key string, _ *yaml.Node) (any, string, bool) {
			return exceptionField(e, key)
		}, nil); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	*out = list
	return nil
}

// Policy validates the file against the system accounts and converts it. All
// problems are reported at once, each with its field path.
func (f File) Policy(dir *Directory) (Policy, error) {
	p := Policy{Enabled: f.Enabled, Backend: f.Backend, Cgroup: f.Cgroup, AllowLocal: f.AllowLocal}
	var errs []error
	if !validBackendName(f.Backend) {
		errs = append(errs, fmt.Errorf("backend: invalid backend name %q: %s", f.Backend, backendNameHint))
	}
	if err := ValidCgroup(f.Cgroup); err != nil {
		errs = append(errs, fmt.Errorf("cgroup: %w", err))
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
	if f.RateLimit != "" {
		r, err := ParseRate(f.RateLimit)
		if err != nil {
			errs = append(errs, fmt.Errorf("rate_limit: %w", err))
		}
		p.RateLimit = r
	}
	setRates := func(field string, list []Principal, refs []string, rates map[string]string) {
		used := map[string]bool{}
		for i, ref := range refs {
			text, ok := rates[ref]
			if !ok || i >= len(list) || list[i].Ref() != ref {
				continue
			}
			used[ref] = true
			rs, err := ParseRateSetting(text)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.%s: %w", field, ref, err))
				continue
			}
			list[i].Rate = rs
		}
		for _, ref := range slices.Sorted(maps.Keys(rates)) {
			if !used[ref] && !slices.Contains(refs, ref) {
				errs = append(errs, fmt.Errorf("%s.%s: not in the allowed list: allow it there too, or drop its rate", field, ref))
			}
		}
	}
	if len(errs) == 0 {
		setRates("user_rates", p.Users, f.AllowedUsers, f.UserRates)
		setRates("group_rates", p.Groups, f.AllowedGroups, f.GroupRates)
	}
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
	rate, err := ParseRateSetting(fe.Rate)
	if err != nil {
		return Exception{}, fmt.Errorf("rate: %w", err)
	}
	return Exception{Principal: pr, Destination: d.Canonical, Ports: ports, Rate: rate}, nil
}
