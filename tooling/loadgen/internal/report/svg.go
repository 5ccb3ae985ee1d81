package report

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// series is one kind of bar in every group.
type series struct {
	name, color string
}

// group is one row of bars: one value per series (NaN for none).
type group struct {
	label  string
	values []Stat
}

// chart is a horizontal bar chart with min–max whiskers.
type chart struct {
	title, unit, note string
	series            []series
	groups            []group
	log               bool
	// axisMax fixes the axis end (linear); larger bars are cut and
	// labelled. 0 fits every bar.
	axisMax float64
}

const (
	chartWidth = 880
	labelWidth = 250
	plotWidth  = 520
	barHeight  = 14
	groupGap   = 12
	topMargin  = 58
)

// svg renders the chart.
func (c chart) svg() string {
	lo, hi := c.bounds()
	x := func(v float64) float64 {
		var f float64
		if c.log {
			f = (math.Log10(v) - math.Log10(lo)) / (math.Log10(hi) - math.Log10(lo))
		} else {
			f = v / hi
		}
		return labelWidth + math.Max(0, math.Min(f, 1))*plotWidth
	}
	rows := len(c.groups)
	groupH := len(c.series)*barHeight + groupGap
	plotH := rows * groupH
	height := topMargin + plotH + 48
	if c.note != "" {
		height += 16 * (1 + len(c.note)/120)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="16" font-weight="bold">%s</text>`+"\n", 10, esc(c.title))
	// Legend.
	lx := labelWidth
	for _, s := range c.series {
		fmt.Fprintf(&b, `<rect x="%d" y="32" width="12" height="12" fill="%s"/><text x="%d" y="42">%s</text>`+"\n", lx, s.color, lx+16, esc(s.name))
		lx += 24 + 7*len(s.name)
	}
	// Grid and ticks.
	axisY := topMargin + plotH
	for _, t := range c.ticks(lo, hi) {
		tx := x(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", tx, topMargin-4, tx, axisY)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#444">%s</text>`+"\n", tx, axisY+16, fmtNum(t))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#444">%s</text>`+"\n", labelWidth+plotWidth/2, axisY+34, esc(c.unit))
	for gi, g := range c.groups {
		y0 := topMargin + gi*groupH
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelWidth-8, y0+len(c.series)*barHeight/2+4, esc(g.label))
		for si, v := range g.values {
			if !v.Valid() || v.Median <= 0 {
				continue
			}
			y := y0 + si*barHeight
			x1 := x(v.Median)
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s %s: %s</title></rect>`+"\n",
				labelWidth, y+1, x1-labelWidth, barHeight-2, c.series[si].color, esc(g.label), esc(c.series[si].name), esc(fmtStat(v)))
			cut := !c.log && c.axisMax > 0 && v.Median > hi
			if v.N > 1 && !cut {
				wy := float64(y) + barHeight/2
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#222"/>`+"\n", x(v.Min), wy, x(v.Max), wy)
				for _, e := range []float64{v.Min, v.Max} {
					fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#222"/>`+"\n", x(e), wy-3, x(e), wy+3)
				}
			}
			label := fmtNum(v.Median)
			if cut {
				label = "→ " + label + " (axis cut)"
				fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="end" fill="white" font-size="11">%s</text>`+"\n", x1-4, y+barHeight-3, esc(label))
				continue
			}
			lx := math.Max(x1, x(v.Max)) + 4
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" fill="#222">%s</text>`+"\n", lx, y+barHeight-3, esc(label))
		}
	}
	if c.note != "" {
		y := axisY + 52
		for _, line := range wrap(c.note, 130) {
			fmt.Fprintf(&b, `<text x="10" y="%d" fill="#555" font-size="11">%s</text>`+"\n", y, esc(line))
			y += 15
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// bounds returns the axis range.
func (c chart) bounds() (lo, hi float64) {
	lo, hi = math.Inf(1), 0
	for _, g := range c.groups {
		for _, v := range g.values {
			if !v.Valid() || v.Median <= 0 {
				continue
			}
			lo = math.Min(lo, math.Min(v.Min, v.Median))
			hi = math.Max(hi, math.Max(v.Max, v.Median))
		}
	}
	if hi == 0 {
		return 0.1, 1
	}
	if c.log {
		lo = math.Pow(10, math.Floor(math.Log10(math.Max(lo, 1e-3))))
		hi = math.Pow(10, math.Ceil(math.Log10(hi)))
		if hi <= lo {
			hi = lo * 10
		}
		return lo, hi
	}
	if c.axisMax > 0 {
		hi = c.axisMax
	}
	step := niceStep(hi / 5)
	return 0, math.Ceil(hi/step) * step
}

func (c chart) ticks(lo, hi float64) []float64 {
	var ts []float64
	if c.log {
		for t := lo; t <= hi*1.0001; t *= 10 {
			ts = append(ts, t)
		}
		return ts
	}
	step := niceStep(hi / 5)
	for t := 0.0; t <= hi*1.0001; t += step {
		ts = append(ts, t)
	}
	return ts
}

// niceStep rounds a step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func wrap(s string, width int) []string {
	var lines []string
	var cur string
	for _, w := range strings.Fields(s) {
		if cur != "" && len(cur)+1+len(w) > width {
			lines = append(lines, cur)
			cur = ""
		}
		if cur != "" {
			cur += " "
		}
		cur += w
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}

func esc(s string) string { return html.EscapeString(s) }
