package policy

import (
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rate
		ok   bool
	}{
		{"5/m", Rate{5, time.Minute}, true},
		{"100/h", Rate{100, time.Hour}, true},
		{" 3 / second ", Rate{3, time.Second}, true},
		{"1/D", Rate{1, 24 * time.Hour}, true},
		{"off", Rate{}, true},
		{"OFF", Rate{}, true},
		{"0/m", Rate{}, false},
		{"-1/m", Rate{}, false},
		{"5", Rate{}, false},
		{"5/w", Rate{}, false},
		{"1000001/s", Rate{}, false},
		{"x/m", Rate{}, false},
		{"", Rate{}, false},
	} {
		got, err := ParseRate(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok {
			back, err := ParseRate(got.String())
			if err != nil || back != got {
				t.Errorf("ParseRate(%q.String()=%q) = %v, %v; want round trip", tc.in, got.String(), back, err)
			}
		}
	}
}
