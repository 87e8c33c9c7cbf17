package tracetool

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
)

// eventStats is what validateTraceEvents counted.
type eventStats struct {
	byPh        map[string]int
	byCat       map[string]int
	threadNames map[int64]string
	denseFrames int64 // the frames the density slices count
	globals     int   // global instant events (the markers)
}

// validateTraceEvents checks data against the Chrome trace-event format
// (the JSON object form) as ui.perfetto.dev and chrome://tracing read
// it: a traceEvents array of objects, each with a known phase and the
// fields that phase needs (ts and dur non-negative numbers, an instant's
// scope, a counter's numeric args, a metadata event's args), every
// track named, and the complete slices of each track nested, never
// overlapping.
func validateTraceEvents(data []byte) (*eventStats, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var top map[string]json.RawMessage
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if u, ok := top["displayTimeUnit"]; ok && string(u) != `"ns"` && string(u) != `"ms"` {
		return nil, fmt.Errorf("displayTimeUnit %s: want \"ms\" or \"ns\"", u)
	}
	raw, ok := top["traceEvents"]
	if !ok {
		return nil, fmt.Errorf("no traceEvents")
	}
	dec = json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var events []map[string]any
	if err := dec.Decode(&events); err != nil {
		return nil, fmt.Errorf("traceEvents is not an array of objects: %w", err)
	}
	st := &eventStats{byPh: map[string]int{}, byCat: map[string]int{}, threadNames: map[int64]string{}}
	type slice struct{ ts, end int64 } // ns: the format's µs with three decimals are exact ns
	slices := map[int64][]slice{}
	used := map[int64]bool{}
	num := func(e map[string]any, k string, nonNeg bool) (float64, error) {
		n, ok := e[k].(json.Number)
		if !ok {
			return 0, fmt.Errorf("event %v: %q is not a number", e, k)
		}
		f, err := n.Float64()
		if err != nil || nonNeg && f < 0 {
			return 0, fmt.Errorf("event %v: %q = %v is not a non-negative number", e, k, n)
		}
		return f, nil
	}
	for _, e := range events {
		ph, ok := e["ph"].(string)
		if !ok {
			return nil, fmt.Errorf("event %v has no ph", e)
		}
		if _, ok := e["name"].(string); !ok {
			return nil, fmt.Errorf("event %v has no name", e)
		}
		if _, err := num(e, "pid", true); err != nil {
			return nil, err
		}
		st.byPh[ph]++
		if c, ok := e["cat"].(string); ok {
			st.byCat[c]++
		}
		tid := int64(-1)
		if _, ok := e["tid"]; ok {
			f, err := num(e, "tid", true)
			if err != nil {
				return nil, err
			}
			tid = int64(f)
		}
		args, _ := e["args"].(map[string]any)
		switch ph {
		case "M":
			switch e["name"] {
			case "process_name", "thread_name":
				name, ok := args["name"].(string)
				if !ok {
					return nil, fmt.Errorf("metadata %v: args.name is not a string", e)
				}
				if e["name"] == "thread_name" {
					st.threadNames[tid] = name
				}
			case "process_sort_index", "thread_sort_index":
				if _, ok := args["sort_index"].(json.Number); !ok {
					return nil, fmt.Errorf("metadata %v: args.sort_index is not a number", e)
				}
			default:
				return nil, fmt.Errorf("metadata event of unknown name %v", e["name"])
			}
		case "X":
			ts, err := num(e, "ts", true)
			if err != nil {
				return nil, err
			}
			dur, err := num(e, "dur", true)
			if err != nil {
				return nil, err
			}
			if tid < 0 {
				return nil, fmt.Errorf("slice %v has no tid", e)
			}
			used[tid] = true
			slices[tid] = append(slices[tid], slice{int64(math.Round(ts * 1000)), int64(math.Round(ts*1000)) + int64(math.Round(dur*1000))})
			if e["cat"] == "density" {
				f, ok := args["frames"].(json.Number)
				if !ok {
					return nil, fmt.Errorf("density slice %v has no frames count", e)
				}
				n, _ := f.Int64()
				st.denseFrames += n
			}
		case "i", "I":
			if _, err := num(e, "ts", true); err != nil {
				return nil, err
			}
			switch e["s"] {
			case "g":
				st.globals++
			case "p":
			case "t", nil:
				if tid < 0 {
					return nil, fmt.Errorf("thread instant %v has no tid", e)
				}
				used[tid] = true
			default:
				return nil, fmt.Errorf("instant %v: scope %v is not g, p or t", e, e["s"])
			}
		case "C":
			if _, err := num(e, "ts", true); err != nil {
				return nil, err
			}
			if len(args) != 1 {
				// Perfetto's JSON importer refuses multi-value counters.
				return nil, fmt.Errorf("counter %v: want exactly one value, has %d", e, len(args))
			}
			for k, v := range args {
				if _, ok := v.(json.Number); !ok {
					return nil, fmt.Errorf("counter %v: %s is not a number", e, k)
				}
			}
		default:
			return nil, fmt.Errorf("event %v: phase %q is not one this writer uses", e, ph)
		}
	}
	for tid := range used {
		if _, ok := st.threadNames[tid]; !ok {
			return nil, fmt.Errorf("track %d has events but no thread_name", tid)
		}
	}
	for tid, ss := range slices {
		sort.SliceStable(ss, func(i, j int) bool { return ss[i].ts < ss[j].ts })
		var stack []slice
		for _, s := range ss {
			for len(stack) > 0 && s.ts >= stack[len(stack)-1].end {
				stack = stack[:len(stack)-1]
			}
			if len(stack) > 0 && s.end > stack[len(stack)-1].end {
				return nil, fmt.Errorf("track %d: slice [%v, %v] overlaps [%v, %v] without nesting", tid, s.ts, s.end, stack[len(stack)-1].ts, stack[len(stack)-1].end)
			}
			stack = append(stack, s)
		}
	}
	return st, nil
}

// TestValidatorRejects is the validator's positive control: each
// malformed document is refused, and the well-formed one next to them
// passes.
func TestValidatorRejects(t *testing.T) {
	named := `{"ph":"M","pid":1,"tid":5,"name":"thread_name","args":{"name":"x"}}`
	tests := []struct {
		name string
		doc  string
		ok   bool
	}{
		{"well-formed", `{"traceEvents":[` + named + `,{"ph":"X","pid":1,"tid":5,"name":"a","ts":1,"dur":5},{"ph":"X","pid":1,"tid":5,"name":"b","ts":2,"dur":1},{"ph":"i","s":"g","pid":1,"name":"m","ts":3},{"ph":"C","pid":1,"name":"c","ts":0,"args":{"v":1}}]}`, true},
		{"not an object", `[1,2]`, false},
		{"no traceEvents", `{"x":[]}`, false},
		{"bad time unit", `{"displayTimeUnit":"s","traceEvents":[]}`, false},
		{"no ph", `{"traceEvents":[{"pid":1,"name":"a"}]}`, false},
		{"unknown ph", `{"traceEvents":[{"ph":"Q","pid":1,"name":"a"}]}`, false},
		{"negative ts", `{"traceEvents":[` + named + `,{"ph":"X","pid":1,"tid":5,"name":"a","ts":-1,"dur":5}]}`, false},
		{"string dur", `{"traceEvents":[` + named + `,{"ph":"X","pid":1,"tid":5,"name":"a","ts":1,"dur":"5"}]}`, false},
		{"bad scope", `{"traceEvents":[{"ph":"i","s":"x","pid":1,"name":"a","ts":1}]}`, false},
		{"multi-value counter", `{"traceEvents":[{"ph":"C","pid":1,"name":"c","ts":0,"args":{"a":1,"b":2}}]}`, false},
		{"counter text", `{"traceEvents":[{"ph":"C","pid":1,"name":"c","ts":0,"args":{"v":"1"}}]}`, false},
		{"unnamed track", `{"traceEvents":[{"ph":"X","pid":1,"tid":6,"name":"a","ts":1,"dur":5}]}`, false},
		{"overlap", `{"traceEvents":[` + named + `,{"ph":"X","pid":1,"tid":5,"name":"a","ts":1,"dur":5},{"ph":"X","pid":1,"tid":5,"name":"b","ts":4,"dur":5}]}`, false},
		{"metadata without name", `{"traceEvents":[{"ph":"M","pid":1,"tid":5,"name":"thread_name","args":{}}]}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := validateTraceEvents([]byte(tt.doc))
			if tt.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}
