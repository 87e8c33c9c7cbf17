package tracetool

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay"
)

// Property is what a trace must show for the minimizer to keep it: every
// one of its conditions, as `--until` names them (comma-separated):
//
//	violation     replay finds an invariant violated (violation=N: invariant N)
//	mismatch      the replayed outcome differs from the recorded one, and in
//	              every field in which the original trace's replay differs,
//	              the replay still gives the value the original's gave
//	killed        an SCDX was accepted
//	sys_rdy       an SRDY was accepted
//	reject=REASON a frame was rejected for REASON (crc, pad, unknown_tag,
//	              forged_tag, shape, oneshot_repeat, overflow, out_of_order),
//	              or a stream counter (oversize, resync_bytes,
//	              truncated_tail_bytes) is non-zero
//	tag=TAG       a frame of tag TAG was accepted
type Property struct {
	conds []cond
}

type condKind uint8

const (
	condViolation condKind = iota
	condMismatch
	condKilled
	condSysRdy
	condReject
	condCounter
	condTag
)

type cond struct {
	kind    condKind
	inv     int             // condViolation: the invariant, 0 for any
	reason  dispatch.Reason // condReject
	counter string          // condCounter
	tag     wire.Tag        // condTag
}

// streamCounterNames are the outcome's stream counters reject= also
// takes.
func streamCounterNames() []string {
	return []string{"oversize", "resync_bytes", "truncated_tail_bytes"}
}

// ParseProperty reads a property as `--until` takes it.
func ParseProperty(s string) (Property, error) {
	var p Property
	if strings.TrimSpace(s) == "" {
		return p, fmt.Errorf("no property given; use violation, mismatch, killed, sys_rdy, reject=REASON or tag=TAG, comma-separated")
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		name, arg, hasArg := strings.Cut(item, "=")
		var c cond
		switch {
		case name == "violation" && !hasArg:
			c = cond{kind: condViolation}
		case name == "violation":
			n, err := strconv.Atoi(arg)
			if err != nil || n < 1 || n > 11 {
				return Property{}, fmt.Errorf("property %q: want violation=N with N an invariant number, 1 to 11 (docs/protocol.md §9)", item)
			}
			c = cond{kind: condViolation, inv: n}
		case name == "mismatch" && !hasArg:
			c = cond{kind: condMismatch}
		case name == "killed" && !hasArg:
			c = cond{kind: condKilled}
		case name == "sys_rdy" && !hasArg:
			c = cond{kind: condSysRdy}
		case name == "reject" && hasArg:
			var ok bool
			if c, ok = parseReject(arg); !ok {
				return Property{}, fmt.Errorf("property %q: unknown reason %q; use one of %s", item, arg, strings.Join(reasonNames(), ", "))
			}
		case name == "tag" && hasArg:
			t, ok := wire.ParseTag(arg)
			if !ok {
				return Property{}, fmt.Errorf("property %q: a tag is four characters (e.g. SCDX) or 0x and eight hex digits", item)
			}
			switch t.Class() {
			case wire.Unknown:
				return Property{}, fmt.Errorf("property %q: %s is not in the gate table, so no frame of it is ever accepted; for its frames use reject=unknown_tag", item, t)
			case wire.HostToGuest:
				return Property{}, fmt.Errorf("property %q: %s is a host→guest tag, never accepted on TX; for forged ones use reject=forged_tag", item, t)
			}
			c = cond{kind: condTag, tag: t}
		default:
			return Property{}, fmt.Errorf("unknown property %q; use violation, violation=N, mismatch, killed, sys_rdy, reject=REASON or tag=TAG, comma-separated", item)
		}
		if !slices.Contains(p.conds, c) {
			p.conds = append(p.conds, c)
		}
	}
	return p, nil
}

func parseReject(arg string) (cond, bool) {
	for _, r := range dispatch.Reasons() {
		if r.String() == arg {
			return cond{kind: condReject, reason: r}, true
		}
	}
	if slices.Contains(streamCounterNames(), arg) {
		return cond{kind: condCounter, counter: arg}, true
	}
	return cond{}, false
}

func reasonNames() []string {
	var n []string
	for _, r := range dispatch.Reasons() {
		n = append(n, r.String())
	}
	return append(n, streamCounterNames()...)
}

// String returns the property as ParseProperty reads it.
func (p Property) String() string {
	var s []string
	for _, c := range p.conds {
		s = append(s, c.String())
	}
	return strings.Join(s, ",")
}

// String returns the condition as ParseProperty reads it.
func (c cond) String() string {
	switch c.kind {
	case condViolation:
		if c.inv > 0 {
			return "violation=" + strconv.Itoa(c.inv)
		}
		return "violation"
	case condMismatch:
		return "mismatch"
	case condKilled:
		return "killed"
	case condSysRdy:
		return "sys_rdy"
	case condReject:
		return "reject=" + c.reason.String()
	case condCounter:
		return "reject=" + c.counter
	default:
		return "tag=" + c.tag.String()
	}
}

// NeedsRecorded reports whether the property compares with the recorded
// outcome (mismatch), which only a trace with an END outcome has.
func (p Property) NeedsRecorded() bool {
	return slices.ContainsFunc(p.conds, func(c cond) bool { return c.kind == condMismatch })
}

func (p Property) needsViolations() bool {
	return slices.ContainsFunc(p.conds, func(c cond) bool { return c.kind == condViolation })
}

// Checker decides whether in-memory streams show a property. It replays
// each through a reused dispatch.Session clocked by the stream's
// delivery times (and through replay.CheckStream when the property asks
// for a violation), as `ktstr replay` would replay the trace written
// from it.
type Checker struct {
	prop     Property
	recorded *dispatch.Outcome
	fields   []outcomeField   // mismatch: the fields the baseline differs in
	base     dispatch.Outcome // mismatch: the baseline's outcome
	s        *dispatch.Session
	tags     []wire.Tag // the tags the property wants accepted
	seen     []bool
	fn       dispatch.FrameFunc
	runs     int
}

// NewChecker returns a Checker for p. recorded is the outcome the trace's
// END record holds, or nil.
func NewChecker(p Property, recorded *dispatch.Outcome) *Checker {
	c := &Checker{prop: p, recorded: recorded, s: dispatch.NewSession()}
	for _, cd := range p.conds {
		if cd.kind == condTag {
			c.tags = append(c.tags, cd.tag)
		}
	}
	c.seen = make([]bool, len(c.tags))
	if len(c.tags) > 0 {
		c.fn = func(m *dispatch.Message, r dispatch.Result) {
			if !r.Accepted() {
				return
			}
			for i, t := range c.tags {
				if m.Tag == t {
					c.seen[i] = true
				}
			}
		}
	}
	return c
}

// Runs returns how many streams the Checker has replayed.
func (c *Checker) Runs() int { return c.runs }

// Baseline checks the original stream. It fixes what mismatch means for
// the later checks (the fields in which the baseline's outcome differs
// from the recorded one, and the values the baseline's replay gives
// them) and, when s does not show the property, says why in words ("no
// frame was rejected as crc").
func (c *Checker) Baseline(s *replay.Stream) (bool, string) {
	out, violations := c.replay(s)
	if c.recorded != nil {
		c.fields = differingOutcomeFields(&out, c.recorded)
		c.base = cloneOutcome(&out)
	}
	var why []string
	for _, cd := range c.prop.conds {
		if !c.holds(cd, &out, violations) {
			why = append(why, c.explain(cd))
		}
	}
	return len(why) == 0, strings.Join(why, "; ")
}

// Check reports whether s shows the property. Call Baseline first.
func (c *Checker) Check(s *replay.Stream) bool {
	out, violations := c.replay(s)
	for _, cd := range c.prop.conds {
		if !c.holds(cd, &out, violations) {
			return false
		}
	}
	return true
}

// replay runs s and returns its outcome (valid until the next call) and,
// when the property needs them, its violations.
func (c *Checker) replay(s *replay.Stream) (dispatch.Outcome, []string) {
	c.runs++
	clear(c.seen)
	c.s.Reset()
	for i := range s.Deliveries() {
		c.s.Feed(s.Times[i], s.Delivery(i), c.fn)
	}
	out := c.s.Finish()
	var v []string
	if c.prop.needsViolations() {
		_, _, v = replay.CheckStream(s, replay.Chunking{Kind: replay.ChunkRecorded})
	}
	return out, v
}

func (c *Checker) holds(cd cond, out *dispatch.Outcome, violations []string) bool {
	switch cd.kind {
	case condViolation:
		if cd.inv == 0 {
			return len(violations) > 0
		}
		prefix := fmt.Sprintf("invariant %d: ", cd.inv)
		return slices.ContainsFunc(violations, func(v string) bool { return strings.HasPrefix(v, prefix) })
	case condMismatch:
		if c.recorded == nil || len(c.fields) == 0 {
			return false
		}
		for _, f := range c.fields {
			if f.differs(out, &c.base) {
				return false
			}
		}
		return true
	case condKilled:
		return out.Killed
	case condSysRdy:
		return out.SysRdy
	case condReject:
		return out.Rejected.Count(cd.reason) > 0
	case condCounter:
		switch cd.counter {
		case "oversize":
			return out.Rejected.Oversize > 0
		case "resync_bytes":
			return out.Rejected.ResyncBytes > 0
		default:
			return out.Rejected.TruncatedTailBytes > 0
		}
	default:
		i := slices.Index(c.tags, cd.tag)
		return i >= 0 && c.seen[i]
	}
}

func (c *Checker) explain(cd cond) string {
	switch cd.kind {
	case condViolation:
		if cd.inv > 0 {
			return fmt.Sprintf("its replay breaks no invariant %d", cd.inv)
		}
		return "its replay breaks no invariant"
	case condMismatch:
		if c.recorded == nil {
			return "it has no recorded outcome to mismatch (no END record holding one)"
		}
		return "its replay matches the recorded outcome"
	case condKilled:
		return "no SCDX was accepted"
	case condSysRdy:
		return "no SRDY was accepted"
	case condReject:
		return "no frame was rejected as " + cd.reason.String()
	case condCounter:
		return "its " + cd.counter + " counter is 0"
	default:
		return "no " + cd.tag.String() + " frame was accepted"
	}
}
