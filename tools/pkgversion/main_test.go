package main

import (
	"os/exec"
	"strings"
	"testing"
)

func TestPkgVersion(t *testing.T) {
	tests := []struct {
		name, describe, want string
	}{
		{"release tag", "v1.2.3", "1.2.3"},
		{"tag without v", "2.0", "2.0"},
		{"release candidate", "v1.2.3-rc1", "1.2.3~rc1"},
		{"commits after a tag", "v1.2.3-4-gabc1234", "1.2.3+git4.abc1234"},
		{"commits after a candidate", "v1.2.3-rc.1-12-g0123abcd", "1.2.3~rc.1+git12.0123abcd"},
		{"dirty tag", "v1.2.3-dirty", "1.2.3.dirty"},
		{"dirty after a tag", "v1.2.3-4-gabc1234-dirty", "1.2.3+git4.abc1234.dirty"},
		{"no tag", "ecb2e80", "0.0.0~git20261125.ecb2e80"},
		{"no tag, dirty", "ecb2e80-dirty", "0.0.0~git20261125.ecb2e80.dirty"},
		{"tag that is no version", "pre-release-3-gabc1234", "0.0.0~git20261125.abc1234"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pkgVersion(tt.describe, "20261125")
			if err != nil {
				t.Fatalf("pkgVersion(%q) error: %v", tt.describe, err)
			}
			if got != tt.want {
				t.Errorf("pkgVersion(%q) = %q, want %q", tt.describe, got, tt.want)
			}
		})
	}
}

func TestPkgVersionRefusesWhatItCannotMap(t *testing.T) {
	for _, tt := range []struct{ describe, date string }{
		{"not-a-version", "20261125"}, // a tag that is no version, and no hash
		{"v1.2.3", "2026-11-25"},
		{"", "20261125"},
	} {
		if got, err := pkgVersion(tt.describe, tt.date); err == nil {
			t.Errorf("pkgVersion(%q, %q) = %q, want an error", tt.describe, tt.date, got)
		}
	}
}

// TestPkgVersionOrdersAsDpkgDoes checks the point of the mapping with dpkg
// itself: each version sorts after the one before it.
func TestPkgVersionOrdersAsDpkgDoes(t *testing.T) {
	dpkg, err := exec.LookPath("dpkg")
	if err != nil {
		t.Skip("dpkg not installed: the ordering is dpkg's to judge")
	}
	order := []string{"abc1234", "v1.2.3-rc1", "v1.2.3-rc1-2-gabc1234", "v1.2.3", "v1.2.3-1-gabc1234", "v1.2.3-10-gabc1234", "v1.2.4"}
	var prev string
	for _, d := range order {
		v, err := pkgVersion(d, "20261125")
		if err != nil {
			t.Fatal(err)
		}
		if prev != "" {
			if out, err := exec.Command(dpkg, "--compare-versions", prev, "lt", v).CombinedOutput(); err != nil {
				t.Errorf("dpkg says %q is not before %q (%v %s)", prev, v, err, strings.TrimSpace(string(out)))
			}
		}
		prev = v
	}
}
