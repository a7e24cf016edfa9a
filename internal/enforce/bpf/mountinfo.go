package bpf

import "strings"

// ParseCgroup2Mount finds the first cgroup2 mount point in mountinfo(5)
// text. Mount points have spaces and other specials octal-escaped ("\040").
func ParseCgroup2Mount(mountinfo string) (string, bool) {
	for line := range strings.Lines(mountinfo) {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		fields := strings.Fields(pre)
		rest := strings.Fields(post)
		if len(fields) < 5 || len(rest) < 1 || rest[0] != "cgroup2" {
			continue
		}
		return unescapeMount(fields[4]), true
	}
	return "", false
}

func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
