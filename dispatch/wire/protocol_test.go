package wire_test

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// protocolDoc is the project's statement of the protocol; its tag table
// must list exactly the tags of wire.Tags().
const protocolDoc = "../../docs/protocol.md"

// tagTableHeader starts the header line of the tag table in protocolDoc.
const tagTableHeader = "| tag | value | class |"

// docTagRow is one row of the tag table as written in the document.
type docTagRow struct {
	Tag   string // the four characters, backticks removed
	Value uint32 // the value column, parsed
	Class string // the class column
	Line  int    // 1-based line number in the document
}

var (
	docValueRE = regexp.MustCompile(`^0x[0-9A-F]{8}$`)
	docClasses = map[string]bool{"internal": true, "verdict": true, "host-to-guest": true}
)

// parseTagTable finds the one Markdown table whose header begins with
// tagTableHeader and returns its rows. It fails on a missing or
// repeated table, a missing separator line, or a row whose value is not
// 0x followed by eight upper-case hex digits or whose class is not one
// of internal, verdict, host-to-guest.
func parseTagTable(doc string) ([]docTagRow, error) {
	lines := strings.Split(doc, "\n")
	start := -1
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), tagTableHeader) {
			if start >= 0 {
				return nil, fmt.Errorf("line %d: a second tag table (the first is at line %d)", i+1, start+1)
			}
			start = i
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("no table whose header begins %q", tagTableHeader)
	}
	if start+1 >= len(lines) || !strings.HasPrefix(strings.TrimSpace(lines[start+1]), "|---") {
		return nil, fmt.Errorf("line %d: the tag table header is not followed by a |---| separator", start+2)
	}
	var rows []docTagRow
	for i := start + 2; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(l, "|") {
			break // the table ends at the first line that is not a row
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		if len(cells) < 3 {
			return nil, fmt.Errorf("line %d: %d cells, want at least 3", i+1, len(cells))
		}
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		tag := strings.Trim(cells[0], "`")
		if !docValueRE.MatchString(cells[1]) {
			return nil, fmt.Errorf("line %d: value %q is not 0x and eight upper-case hex digits", i+1, cells[1])
		}
		v, err := strconv.ParseUint(cells[1][2:], 16, 32)
		if err != nil {
			return nil, fmt.Errorf("line %d: value %q: %v", i+1, cells[1], err)
		}
		if !docClasses[cells[2]] {
			return nil, fmt.Errorf("line %d: class %q is not internal, verdict or host-to-guest", i+1, cells[2])
		}
		rows = append(rows, docTagRow{Tag: tag, Value: uint32(v), Class: cells[2], Line: i + 1})
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("line %d: the tag table has no rows", start+1)
	}
	return rows, nil
}

// compareTagTable lists, one line each, how rows differ from tags: a row
// for no tag (or a repeated row), a tag with no row, and for each row
// of a known tag a value other than uint32(tag), characters that
// wire.Tag(value).String() does not spell, or a class other than
// tag.Class().String(). An empty result means the table is exactly tags.
func compareTagTable(rows []docTagRow, tags []wire.Tag) []string {
	var d []string
	byName := make(map[string]wire.Tag, len(tags))
	for _, t := range tags {
		byName[t.String()] = t
	}
	seen := make(map[wire.Tag]int, len(rows))
	for _, r := range rows {
		if s := wire.Tag(r.Value).String(); s != r.Tag {
			d = append(d, fmt.Sprintf("line %d: %s has value 0x%08X, which spells %s", r.Line, r.Tag, r.Value, s))
		}
		t, ok := byName[r.Tag]
		if !ok {
			d = append(d, fmt.Sprintf("line %d: %s is not in wire.Tags()", r.Line, r.Tag))
			continue
		}
		if prev, dup := seen[t]; dup {
			d = append(d, fmt.Sprintf("line %d: %s repeats the row at line %d", r.Line, r.Tag, prev))
			continue
		}
		seen[t] = r.Line
		if r.Value != uint32(t) {
			d = append(d, fmt.Sprintf("line %d: %s has value 0x%08X, want 0x%08X", r.Line, r.Tag, r.Value, uint32(t)))
		}
		if want := t.Class().String(); r.Class != want {
			d = append(d, fmt.Sprintf("line %d: %s has class %q, want %q", r.Line, r.Tag, r.Class, want))
		}
	}
	for _, t := range tags {
		if _, ok := seen[t]; !ok {
			d = append(d, fmt.Sprintf("%s (0x%08X, %s) has no row", t, uint32(t), t.Class()))
		}
	}
	return d
}

func readProtocolDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(protocolDoc)
	require.NoError(t, err, "docs/protocol.md must exist")
	return string(b)
}

// TestProtocolDocTagTable checks that the tag table of docs/protocol.md
// is exactly the gate table of wire.Tags().
func TestProtocolDocTagTable(t *testing.T) {
	rows, err := parseTagTable(readProtocolDoc(t))
	require.NoError(t, err)

	assert.Empty(t, compareTagTable(rows, wire.Tags()))

	// The same facts stated directly, so a failure names the field.
	tags := wire.Tags()
	require.Len(t, rows, len(tags), "one row per tag, no more, no fewer")
	var got, want []uint32
	for _, r := range rows {
		got = append(got, r.Value)
		tag := wire.Tag(r.Value)
		assert.Equal(t, tag.String(), r.Tag, "line %d: the four characters spell the value", r.Line)
		assert.True(t, tag.Listed(), "line %d: %s is in the gate table", r.Line, r.Tag)
		assert.Equal(t, tag.Class().String(), r.Class, "line %d: class of %s", r.Line, r.Tag)
	}
	for _, tag := range tags {
		want = append(want, uint32(tag))
	}
	assert.ElementsMatch(t, want, got, "the table's values are exactly wire.Tags()")
}

// TestProtocolDocTagTableSpotValues pins a few rows the brief names,
// independently of wire.Tags(), so a tag dropped from both the code and
// the document is still caught.
func TestProtocolDocTagTableSpotValues(t *testing.T) {
	rows, err := parseTagTable(readProtocolDoc(t))
	require.NoError(t, err)
	byTag := map[string]docTagRow{}
	for _, r := range rows {
		byTag[r.Tag] = r
	}
	for tag, want := range map[string]struct {
		value uint32
		class string
	}{
		"SCDX": {0x53434458, "verdict"},
		"SRDY": {0x53524459, "internal"},
		"WPRF": {0x57505246, "verdict"},
		"SNRP": {0x534E5250, "host-to-guest"},
		"KORP": {0x4B4F5250, "host-to-guest"},
	} {
		r, ok := byTag[tag]
		if assert.True(t, ok, "%s has a row", tag) {
			assert.Equal(t, want.value, r.Value, tag)
			assert.Equal(t, want.class, r.Class, tag)
		}
	}
}

// alter returns doc with old replaced by repl, failing unless old occurs
// exactly once, so a control cannot pass by altering nothing.
func alter(t *testing.T, doc, old, repl string) string {
	t.Helper()
	require.Equal(t, 1, strings.Count(doc, old), "the control's target %q occurs once", old)
	return strings.Replace(doc, old, repl, 1)
}

// rowLine returns the whole table line of tag in doc.
func rowLine(t *testing.T, doc, tag string) string {
	t.Helper()
	for _, l := range strings.Split(doc, "\n") {
		if strings.HasPrefix(l, "| "+tag+" |") {
			return l + "\n"
		}
	}
	require.FailNow(t, "no row", "tag %s", tag)
	return ""
}

// TestProtocolDocTagTableControls shows the comparison can fail: it
// passes on the real table (positive control) and reports each
// deliberate alteration of a copy of it (negative controls).
func TestProtocolDocTagTableControls(t *testing.T) {
	doc := readProtocolDoc(t)

	t.Run("unaltered", func(t *testing.T) {
		rows, err := parseTagTable(doc)
		require.NoError(t, err)
		assert.Empty(t, compareTagTable(rows, wire.Tags()))
	})

	negative := []struct {
		name   string
		doc    func() string
		expect []string // substrings the differences must contain
	}{
		{
			name: "value changed",
			doc: func() string {
				return alter(t, doc, "| SCDX | 0x53434458 |", "| SCDX | 0x53434459 |")
			},
			expect: []string{"SCDX has value 0x53434459, want 0x53434458"},
		},
		{
			name:   "row dropped",
			doc:    func() string { return alter(t, doc, rowLine(t, doc, "WPRF"), "") },
			expect: []string{"WPRF (0x57505246, verdict) has no row"},
		},
		{
			name: "class changed",
			doc: func() string {
				return alter(t, doc, "| KORP | 0x4B4F5250 | host-to-guest |", "| KORP | 0x4B4F5250 | internal |")
			},
			expect: []string{`KORP has class "internal", want "host-to-guest"`},
		},
		{
			name: "extra row",
			doc: func() string {
				l := rowLine(t, doc, "KORP")
				return alter(t, doc, l, l+"| ZZZZ | 0x5A5A5A5A | verdict | x | none | bucket |\n")
			},
			expect: []string{"ZZZZ is not in wire.Tags()"},
		},
		{
			name: "row repeated",
			doc: func() string {
				l := rowLine(t, doc, "STEP")
				return alter(t, doc, l, l+l)
			},
			expect: []string{"STEP repeats the row"},
		},
	}
	for _, tc := range negative {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := parseTagTable(tc.doc())
			require.NoError(t, err, "the altered table still parses")
			d := compareTagTable(rows, wire.Tags())
			require.NotEmpty(t, d, "the comparison must fail on an altered table")
			joined := strings.Join(d, "\n")
			for _, e := range tc.expect {
				assert.Contains(t, joined, e)
			}
		})
	}

	// Alterations the parser itself must refuse.
	t.Run("lower-case value", func(t *testing.T) {
		_, err := parseTagTable(alter(t, doc, "| PROB | 0x50524F42 |", "| PROB | 0x50524f42 |"))
		assert.ErrorContains(t, err, "upper-case")
	})
	t.Run("unknown class", func(t *testing.T) {
		_, err := parseTagTable(alter(t, doc, "| PROB | 0x50524F42 | verdict |", "| PROB | 0x50524F42 | unknown |"))
		assert.ErrorContains(t, err, "class")
	})
	t.Run("no table", func(t *testing.T) {
		_, err := parseTagTable(alter(t, doc, tagTableHeader, "| name | value | class |"))
		assert.ErrorContains(t, err, "no table")
	})
}
