//go:build linux

package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Columns of the report: one per backend present, plus the baseline.
const (
	colNFT = "nft"
	colBPF = "bpf"
	colCSF = "csf-iptables"
)

var columns = []string{colNFT, colBPF, colCSF}

// row is one line of the report. Values are keyed by column; a missing key
// is a cell that does not apply. The verdicts compare the smtpguard columns
// (nft, bpf) with the target; MISS is information, not a failure.
type row struct {
	ID      string             `json:"id"`
	Metric  string             `json:"metric"`
	Unit    string             `json:"unit"` // "x" (ratio), "ms", "MiB", "/s", "count", "%"
	Target  string             `json:"target,omitempty"`
	Values  map[string]float64 `json:"values"`
	Verdict string             `json:"verdict,omitempty"` // nft: PASS, MISS, or "" (no target)
	// VerdictBPF is the bpf column's verdict, as Verdict.
	VerdictBPF string `json:"verdict_bpf,omitempty"`

	ok func(float64) bool // the target as a predicate over a smtpguard value
}

type report struct {
	When    time.Time `json:"when"`
	Kernel  string    `json:"kernel"`
	CPUs    int       `json:"cpus"`
	CSFTool string    `json:"csf_tool"`
	Cgroup  string    `json:"cgroup,omitempty"` // the bpf column's test cgroup
	Notes   []string  `json:"notes"`
	Rows    []row     `json:"rows"`
}

func (r *report) add(id, metric, unit, target string, ok func(float64) bool, values map[string]float64) {
	// Rows sharing a P number get letters: P2a, P2b, ...
	n := 0
	for i := range r.Rows {
		if strings.TrimRight(r.Rows[i].ID, "abcdefgh") == id {
			n++
		}
	}
	if n == 1 {
		r.Rows[len(r.Rows)-1].ID = id + "a" // the first of them, added just before
	}
	if n > 0 {
		id += string(rune('a' + n))
	}
	rw := row{ID: id, Metric: metric, Unit: unit, Target: target, Values: values, ok: ok}
	verdict := func(col string) string {
		v, has := values[col]
		switch {
		case !has || ok == nil || math.IsNaN(v):
			return ""
		case ok(v):
			return "PASS"
		}
		return "MISS"
	}
	rw.Verdict, rw.VerdictBPF = verdict(colNFT), verdict(colBPF)
	r.Rows = append(r.Rows, rw)
}

func atLeast(x float64) func(float64) bool { return func(v float64) bool { return v >= x } }
func below(x float64) func(float64) bool   { return func(v float64) bool { return v < x } }

func format(v float64, unit string) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	switch unit {
	case "x":
		return fmt.Sprintf("%.3f×", v)
	case "ms":
		if v < 1 {
			return fmt.Sprintf("%.3f ms", v)
		}
		return fmt.Sprintf("%.1f ms", v)
	case "MiB":
		return fmt.Sprintf("%.1f MiB", v)
	case "/s":
		return fmt.Sprintf("%.0f/s", v)
	case "MB/s":
		return fmt.Sprintf("%.0f MB/s", v)
	case "%":
		return fmt.Sprintf("%.1f%%", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// print writes the table in Markdown, so it can go into README as is.
func (r *report) print(w io.Writer) {
	header := append([]string{"", "metric"}, columns...)
	header = append(header, "target", "nft verdict", "bpf verdict")
	lines := [][]string{header}
	for _, rw := range r.Rows {
		cells := []string{rw.ID, rw.Metric}
		for _, c := range columns {
			if v, ok := rw.Values[c]; ok {
				cells = append(cells, format(v, rw.Unit))
			} else {
				cells = append(cells, "—")
			}
		}
		cells = append(cells, rw.Target, rw.Verdict, rw.VerdictBPF)
		lines = append(lines, cells)
	}
	widths := make([]int, len(header))
	for _, l := range lines {
		for i, c := range l {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	fmt.Fprintf(w, "\nsmtpguard benchmarks, %s, kernel %s, %d CPUs (ratios against a baseline measured in the same run)\n\n",
		r.When.Format(time.DateTime), r.Kernel, r.CPUs)
	for i, l := range lines {
		var b strings.Builder
		b.WriteString("|")
		for j, c := range l {
			b.WriteString(" " + c + strings.Repeat(" ", widths[j]-len([]rune(c))) + " |")
		}
		fmt.Fprintln(w, b.String())
		if i == 0 {
			b.Reset()
			b.WriteString("|")
			for j := range l {
				b.WriteString(strings.Repeat("-", widths[j]+2) + "|")
			}
			fmt.Fprintln(w, b.String())
		}
	}
	fmt.Fprintln(w)
	for _, n := range r.Notes {
		fmt.Fprintln(w, "- "+n)
	}
	fmt.Fprintln(w, "MISS is information, not a failure: the benchmark fails only when it cannot measure.")
}

func (r *report) writeJSON(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	for i := range r.Rows {
		for k, v := range r.Rows[i].Values {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				delete(r.Rows[i].Values, k)
			}
		}
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// median of durations in milliseconds; NaN for none.
func medianMS(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return math.NaN()
	}
	return float64(percentile(ds, 50)) / float64(time.Millisecond)
}

// percentileMS is percentile in milliseconds; NaN for none.
func percentileMS(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return math.NaN()
	}
	return float64(percentile(ds, p)) / float64(time.Millisecond)
}

func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s) - 1) * p / 100
	return s[i]
}

func medianF(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
