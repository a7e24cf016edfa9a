package web

import (
	"fmt"
	"strconv"
	"time"

	"github.com/smtpguard/smtpguard/internal/engine"
)

// maxChartUsers bounds the rows of the page's per-user table.
const maxChartUsers = 200

// chartWindows are the periods the blocked attempts page offers.
func chartWindows() []string { return []string{"1h", "24h", "7d", "30d"} }

// chart is a bar chart of attempts over time, drawn as SVG by the template:
// no script, nothing for the Content-Security-Policy to allow.
type chart struct {
	Width, Height            int
	Left, Top, Right, Bottom float64 // the plot area
	Bars                     []chartBar
	YTicks                   []chartTick
	XTicks                   []chartTick
	Total                    int64
	Bucket                   string // "hour", "5 minutes"
}

type chartBar struct {
	X, Y, W, H float64
	Label      string // tooltip: period and count
}

type chartTick struct {
	Pos   float64
	Label string
}

// bucketing for each window: bucket size and label format.
func bucketing(window time.Duration) (time.Duration, string, string) {
	switch {
	case window <= time.Hour:
		return 5 * time.Minute, "5 minutes", "15:04"
	case window <= 24*time.Hour:
		return time.Hour, "hour", "15:04"
	case window <= 7*24*time.Hour:
		return 6 * time.Hour, "6 hours", "Mon 15h"
	}
	return 24 * time.Hour, "day", "Jan 2"
}

// chartFrame is the buckets of a chart for a window ending at now.
type chartFrame struct {
	start      time.Time
	size       time.Duration
	n          int
	sizeName   string
	tickLayout string
}

func frameFor(now time.Time, window time.Duration) chartFrame {
	size, sizeName, layout := bucketing(window)
	n := int(window / size)
	if n < 1 {
		n = 1
	}
	end := now.Truncate(size).Add(size)
	return chartFrame{start: end.Add(-time.Duration(n) * size), size: size, n: n, sizeName: sizeName, tickLayout: layout}
}

// buildChart sums attempts into buckets ending at now.
func buildChart(evs []engine.EventView, now time.Time, window time.Duration) chart {
	fr := frameFor(now, window)
	end := fr.start.Add(time.Duration(fr.n) * fr.size)
	counts := make([]int64, fr.n)
	for _, ev := range evs {
		at := ev.LastSeen
		if at.Before(fr.start) || !at.Before(end) {
			continue
		}
		counts[int(at.Sub(fr.start)/fr.size)] += ev.Count
	}
	return drawChart(fr, counts)
}

// drawChart lays out bars for counts, one per bucket of fr.
func drawChart(fr chartFrame, counts []int64) chart {
	start, size, n, layout := fr.start, fr.size, fr.n, fr.tickLayout
	c := chart{Width: 900, Height: 240, Left: 56, Top: 12, Right: 890, Bottom: 204, Bucket: fr.sizeName}
	for _, v := range counts {
		c.Total += v
	}
	var highest int64
	for _, v := range counts {
		highest = max(highest, v)
	}
	top := niceCeil(highest)
	plotH := c.Bottom - c.Top
	slot := (c.Right - c.Left) / float64(n)
	gap := slot * 0.15
	for i, v := range counts {
		h := plotH * float64(v) / float64(top)
		from := start.Add(time.Duration(i) * size)
		c.Bars = append(c.Bars, chartBar{
			X: round1(c.Left + float64(i)*slot + gap/2), Y: round1(c.Bottom - h), W: round1(slot - gap), H: round1(h),
			Label: fmt.Sprintf("%s – %s: %d attempt%s", from.Local().Format("Jan 2 15:04"), from.Add(size).Local().Format("15:04 MST"), v, plural(v)),
		})
	}
	ticks := []int64{0, top}
	if top >= 2 && top%2 == 0 {
		// The half tick only when it is a whole number; compared by
		// position, not value: top/2 is 0 when top is 1.
		ticks = []int64{0, top / 2, top}
	}
	for _, t := range ticks {
		c.YTicks = append(c.YTicks, chartTick{Pos: round1(c.Bottom - plotH*float64(t)/float64(top)), Label: strconv.FormatInt(t, 10)})
	}
	every := max(1, n/6)
	for i := 0; i < n; i += every {
		from := start.Add(time.Duration(i) * size)
		c.XTicks = append(c.XTicks, chartTick{Pos: round1(c.Left + (float64(i)+0.5)*slot), Label: from.Local().Format(layout)})
	}
	return c
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten, at least 1.
func niceCeil(v int64) int64 {
	for p := int64(1); ; p *= 10 {
		for _, m := range []int64{1, 2, 5} {
			if m*p >= v {
				return m * p
			}
		}
	}
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

func plural(n int64) string {
	if n == 1 {
		return ""
	}
	return "s"
}
