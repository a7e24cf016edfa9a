// Command pkgversion turns `git describe --tags --always --dirty` into a
// version that dpkg and rpm accept and order correctly:
//
//	v1.2.3               1.2.3
//	v1.2.3-rc1           1.2.3~rc1                (before 1.2.3)
//	v1.2.3-4-gabc1234    1.2.3+git4.abc1234       (after 1.2.3, before 1.2.4)
//	abc1234              0.0.0~git20261125.abc1234 (no tag yet: the commit date)
//
// and appends ".dirty" for a tree with uncommitted changes.
//
//	go run ./tools/pkgversion DESCRIBE YYYYMMDD
package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: pkgversion GIT-DESCRIBE COMMIT-DATE(YYYYMMDD)")
		os.Exit(2)
	}
	v, err := pkgVersion(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintf(os.Stderr, "pkgversion: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(v)
}

var (
	// described: TAG-N-gHASH, from git describe past a tag.
	described = regexp.MustCompile(`^(.+)-([0-9]+)-g([0-9a-f]{4,40})$`)
	// bareHash: what --always prints when no tag is reachable.
	bareHash = regexp.MustCompile(`^[0-9a-f]{4,40}$`)
	// release: a tag that is a version: v1.2.3, 1.2, v2.0.0-rc.1.
	release = regexp.MustCompile(`^v?([0-9]+(?:\.[0-9]+)*)(?:-([0-9A-Za-z.]+))?$`)
	day     = regexp.MustCompile(`^[0-9]{8}$`)
)

func pkgVersion(describe, date string) (string, error) {
	if !day.MatchString(date) {
		return "", fmt.Errorf("commit date %q is not YYYYMMDD", date)
	}
	d, dirty := strings.CutSuffix(strings.TrimSpace(describe), "-dirty")
	suffix := ""
	if dirty {
		suffix = ".dirty"
	}
	if bareHash.MatchString(d) {
		return "0.0.0~git" + date + "." + d + suffix, nil
	}
	tag, ahead, hash := d, "", ""
	if m := described.FindStringSubmatch(d); m != nil {
		tag, ahead, hash = m[1], m[2], m[3]
	}
	m := release.FindStringSubmatch(tag)
	if m == nil {
		if hash == "" {
			return "", fmt.Errorf("git describe %q: tag %q is not a version (vX.Y.Z) and there is no commit hash to fall back on", describe, tag)
		}
		// A tag that is no version (say "pre-packaging") orders like no tag.
		return "0.0.0~git" + date + "." + hash + suffix, nil
	}
	v := m[1]
	if m[2] != "" {
		v += "~" + m[2]
	}
	if hash != "" {
		v += "+git" + ahead + "." + hash
	}
	return v + suffix, nil
}
