package metrics

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Merge writes the sum of several scrapes in the text format, such as the
// registries of nocrd's proxy worker processes: samples with the same name
// and labels are added up, families keep the first HELP and TYPE seen, and
// families and samples keep the order of their first appearance. Adding is
// right for counters and histograms, and for the gauges nocrd keeps (sizes,
// open connections). A malformed line is an error naming it.
func Merge(w io.Writer, scrapes ...[]byte) error {
	type merged struct {
		name, help, kind string
		keys             []string
		sums             map[string]float64
	}
	var fams []*merged
	byName := map[string]*merged{}
	familyOf := func(name string) *merged {
		f := byName[name]
		if f == nil {
			f = &merged{name: name, sums: map[string]float64{}}
			byName[name] = f
			fams = append(fams, f)
		}
		return f
	}
	for i, s := range scrapes {
		var cur *merged
		for n, line := range bytes.Split(s, []byte("\n")) {
			text := string(line)
			switch {
			case strings.TrimSpace(text) == "":
				continue
			case strings.HasPrefix(text, "# HELP "), strings.HasPrefix(text, "# TYPE "):
				name, rest, _ := strings.Cut(text[len("# HELP "):], " ")
				cur = familyOf(name)
				if strings.HasPrefix(text, "# HELP ") && cur.help == "" {
					cur.help = rest
				} else if strings.HasPrefix(text, "# TYPE ") && cur.kind == "" {
					cur.kind = rest
				}
				continue
			case strings.HasPrefix(text, "#"):
				continue // a comment
			}
			sp := strings.LastIndexByte(text, ' ')
			if sp <= 0 {
				return fmt.Errorf("scrape %d, line %d: not a sample: %q", i+1, n+1, text)
			}
			v, err := strconv.ParseFloat(text[sp+1:], 64)
			if err != nil {
				return fmt.Errorf("scrape %d, line %d: bad value in %q", i+1, n+1, text)
			}
			key := text[:sp]
			f := cur
			if f == nil { // a sample before any HELP or TYPE: its own family
				name, _, _ := strings.Cut(key, "{")
				f = familyOf(name)
			}
			if _, seen := f.sums[key]; !seen {
				f.keys = append(f.keys, key)
			}
			f.sums[key] += v
		}
	}
	bw := bufio.NewWriter(w)
	for _, f := range fams {
		if f.help != "" {
			bw.WriteString("# HELP " + f.name + " " + f.help + "\n")
		}
		if f.kind != "" {
			bw.WriteString("# TYPE " + f.name + " " + f.kind + "\n")
		}
		for _, k := range f.keys {
			bw.WriteString(k + " " + strconv.FormatFloat(f.sums[k], 'g', -1, 64) + "\n")
		}
	}
	return bw.Flush()
}
