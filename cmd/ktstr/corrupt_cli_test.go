package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/internal/tracegen"
)

// Crafting decompressed trace streams (docs/trace-format.md §2), byte
// by byte, to compress into a trace file.

func streamHeader(version uint32, meta string) []byte {
	b := []byte(capture.Magic)
	b = binary.LittleEndian.AppendUint32(b, version)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(meta)))
	return append(b, meta...)
}

func record(kind byte, body []byte) []byte {
	b := binary.LittleEndian.AppendUint32([]byte{kind}, uint32(len(body)))
	return append(b, body...)
}

func recordLen(kind byte, n uint32) []byte { return binary.LittleEndian.AppendUint32([]byte{kind}, n) }

func dataRec(dir byte, port uint16, t int64, data []byte) []byte {
	b := []byte{dir}
	b = binary.LittleEndian.AppendUint16(b, port)
	b = binary.LittleEndian.AppendUint64(b, uint64(t))
	return record(1, append(b, data...))
}

func eventRec(t int64, nameLen uint16, name, detail string) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(t))
	b = binary.LittleEndian.AppendUint16(b, nameLen)
	return record(2, append(append(b, name...), detail...))
}

func endRec(t int64, status int32, reasonLen uint16, reason, outcome string) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(t))
	b = binary.LittleEndian.AppendUint32(b, uint32(status))
	b = binary.LittleEndian.AppendUint16(b, reasonLen)
	return record(3, append(append(b, reason...), outcome...))
}

func join(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// zstdFrame compresses stream as one zstd frame with a checksum.
func zstdFrame(t testing.TB, stream []byte, opts ...zstd.EOption) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, append([]zstd.EOption{zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true)}, opts...)...)
	require.NoError(t, err)
	defer enc.Close()
	return enc.EncodeAll(stream, nil)
}

// traceClass is how every command that reads a trace must treat one.
type traceClass int

const (
	classClean     traceClass = iota // read to its end: exit 0, nothing on stderr
	classTruncated                   // its readable prefix processed: exit 0, one line "truncated at byte N"
	classCorrupt                     // refused: exit 2, one line
	classEither                      // clean, truncated or corrupt, but the same in every command
)

// crafted is one generated trace file and the behaviour it must get.
type crafted struct {
	name  string
	file  []byte
	path  string // written here; set by writeCrafted
	class traceClass
	msg   string // substring of the stderr line
	bomb  bool   // a size bomb: each command's peak RSS is held under 64 MiB
	// mismatch: the END record's outcome is not what the stream gives,
	// which replay checks (exit 1) and the other commands do not.
	mismatch bool
}

// readingCommand is one command line that reads a trace.
type readingCommand struct {
	name string
	args []string
}

// readingCommands are the command lines that read a trace, as a user
// runs them; dir receives what corpus export writes.
func readingCommands(trace, dir string) []readingCommand {
	return []readingCommand{
		{"replay", []string{"replay", trace}},
		{"replay --json", []string{"replay", "--json", trace}},
		{"trace show", []string{"trace", "show", trace}},
		{"trace stat", []string{"trace", "stat", trace}},
		{"corpus export", []string{"corpus", "export", "-o", dir, trace}},
	}
}

// multiFrameTrace writes a valid trace of many small zstd frames (each
// DATA or EVENT record flushed on its own), without END, and returns
// it with the file offsets at which its frames end.
func multiFrameTrace(t *testing.T) ([]byte, []int) {
	t.Helper()
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, capture.Meta{Backend: "test", Scenario: "frames"})
	require.NoError(t, err)
	ends := []int{buf.Len()}
	for i := range 12 {
		frame := wire.AppendFrame(nil, wire.Stimulus, []byte(strings.Repeat("x", 40+i*13)))
		require.NoError(t, w.WriteData(capture.TX, capture.BulkPort, int64(i)*1000, frame))
		require.NoError(t, w.Flush())
		ends = append(ends, buf.Len())
		if i%4 == 3 {
			require.NoError(t, w.WriteEvent(int64(i)*1000+1, "tick", json.RawMessage(`{"i":`+strconv.Itoa(i)+`}`)))
			ends = append(ends, buf.Len())
		}
	}
	require.NoError(t, w.Close())
	return buf.Bytes(), ends
}

// craftedTraces generates the corrupt, truncated and crafted traces.
func craftedTraces(t *testing.T) []crafted {
	t.Helper()
	var out []crafted
	add := func(name string, class traceClass, msg string, file []byte) {
		out = append(out, crafted{name: name, file: file, class: class, msg: msg})
	}
	z := func(parts ...[]byte) []byte { return zstdFrame(t, join(parts...)) }
	hdr := streamHeader(capture.Version, `{"backend":"test","scenario":"crafted"}`)
	frame := wire.AppendFrame(nil, wire.SysRdy, nil)
	data := dataRec(1, 1, 10, frame)

	// 1. A multi-frame trace cut at every frame boundary (a clean end,
	// or inside the header: corrupt) and inside every frame (truncated).
	full, ends := multiFrameTrace(t)
	isEnd := map[int]bool{}
	for _, e := range ends {
		isEnd[e] = true
	}
	cuts := map[int]bool{}
	for _, e := range ends {
		cuts[e] = true
		if e > 3 {
			cuts[e-3] = true
		}
	}
	for c := 0; c < len(full); c += max(1, len(full)/40) {
		cuts[c] = true
	}
	for c := range cuts {
		if c > len(full) {
			continue
		}
		name := fmt.Sprintf("cut at %d of %d", c, len(full))
		switch {
		case c < ends[0]:
			add(name+" (inside the header frame)", classCorrupt, "", full[:c])
		case isEnd[c]:
			add(name+" (a frame boundary)", classClean, "", full[:c])
		default:
			add(name, classTruncated, "truncated at byte", full[:c])
		}
	}

	// 2. Damaged compression: one byte flipped, at spread positions.
	// Whatever each flip gives, every command must give the same.
	for i := 0; i < len(full); i += max(1, len(full)/30) {
		b := bytes.Clone(full)
		b[i] ^= 0x5a
		add(fmt.Sprintf("byte %d flipped", i), classEither, "", b)
	}

	// 3. Not a trace at all.
	add("plain text", classCorrupt, "not zstd-compressed", []byte("hello, world\n"))
	add("one byte", classCorrupt, "", []byte{0x28})
	add("gzip magic", classCorrupt, "not zstd-compressed", []byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"))
	add("xz magic", classCorrupt, "not zstd-compressed", []byte("\xfd7zXZ\x00\x00\x04"))
	add("an ELF file", classCorrupt, "not zstd-compressed", elfImage(nil))
	add("the raw header, uncompressed", classCorrupt, "not zstd-compressed", hdr)
	add("zstd of plain text", classCorrupt, "bad magic", z([]byte("just some text, not a trace header")))
	add("zstd of nothing", classCorrupt, "the trace is empty", z(nil))
	add("trailing garbage after the frames", classCorrupt, "zstd", append(z(hdr, data), "garbage!"...))
	add("a skippable frame only", classCorrupt, "", []byte{0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4})
	add("a skippable frame before the trace (control)", classClean, "", append([]byte{0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 9, 9}, z(hdr, data)...))
	add("two frames, concatenated (control)", classClean, "", append(z(hdr), z(data)...))

	// 4. Header and metadata.
	add("bad magic", classCorrupt, "bad magic", z([]byte("KTSTRTRX"), hdr[8:], data))
	add("magic cut", classCorrupt, "", z([]byte("KTST")))
	for _, v := range []uint32{0, 2, 0xFFFFFFFF} {
		add(fmt.Sprintf("version %d", v), classCorrupt, "format version", z(streamHeader(v, `{}`), data))
	}
	add("header cut inside meta_len", classCorrupt, "", z(hdr[:14]))
	add("metadata over 1 MiB", classCorrupt, "over the", z(binary.LittleEndian.AppendUint32(append([]byte(capture.Magic), 1, 0, 0, 0), capture.MaxMetaSize+1)))
	add("metadata length 4 GiB", classCorrupt, "over the", z(binary.LittleEndian.AppendUint32(append([]byte(capture.Magic), 1, 0, 0, 0), 0xFFFFFFFF)))
	add("metadata cut short", classCorrupt, "metadata", z(streamHeader(1, `{"backend":"test"}`)[:25]))
	for _, m := range []string{"null", "[]", `"str"`, "42", "{", `{"cpus":"two"}`, `{"command_line":"x"}`, `{"start_time":"yesterday"}`, `{"extra":{"a":1}}`, " "} {
		add("metadata "+m, classCorrupt, "metadata", z(streamHeader(1, m), data))
	}
	for _, m := range []string{"{\"scenario\":\"\xff\"}", "{\"backend\":\"a\xc3\"}", "{\"extra\":{\"k\xfe\":\"v\"}}", "{\"kernel_release\":\"\xed\xa0\x80\"}"} {
		add(fmt.Sprintf("metadata not UTF-8 %q", m), classCorrupt, "not valid UTF-8", z(streamHeader(1, m), data))
	}
	add("empty metadata object (control)", classClean, "", z(streamHeader(1, "{}"), data))
	add("unknown metadata fields (control)", classClean, "", z(streamHeader(1, `{"future":[1,2],"backend":"x"}`), data))

	// 5. Records.
	add("reserved kind 0", classCorrupt, "kind 0", z(hdr, data, record(0, nil)))
	add("body over 16 MiB", classCorrupt, "over the", z(hdr, data, recordLen(1, capture.MaxRecordSize+1)))
	add("body length 4 GiB", classCorrupt, "over the", z(hdr, data, recordLen(1, 0xFFFFFFFF)))
	add("unknown kind over 16 MiB", classCorrupt, "over the", z(hdr, data, recordLen(200, capture.MaxRecordSize+1)))
	add("unknown kind, skipped (control)", classClean, "", z(hdr, record(77, []byte("future")), data))
	add("record head cut", classTruncated, "truncated at byte", z(hdr, data, data[:3]))
	add("record body cut", classTruncated, "truncated at byte", z(hdr, data, data[:len(data)-2]))
	add("16 MiB body declared, 5 bytes there", classTruncated, "truncated at byte", z(hdr, data, recordLen(1, capture.MaxRecordSize), []byte{1, 1, 0, 0, 0}))
	add("short DATA", classCorrupt, "shorter", z(hdr, record(1, []byte{1, 1, 0})))
	add("empty DATA", classCorrupt, "shorter", z(hdr, record(1, nil)))
	for _, d := range []byte{0, 3, 255} {
		add(fmt.Sprintf("DATA direction %d", d), classCorrupt, "direction", z(hdr, dataRec(d, 1, 0, frame)))
	}
	add("DATA on another port (control)", classClean, "", z(hdr, dataRec(1, 7, 0, frame)))
	add("RX DATA (control)", classClean, "", z(hdr, dataRec(2, 1, 0, wire.AppendFrame(nil, wire.SnapshotReply, make([]byte, 520)))))
	add("negative time (control)", classClean, "", z(hdr, dataRec(1, 1, -5, frame)))
	add("short EVENT", classCorrupt, "shorter", z(hdr, record(2, []byte{1, 2})))
	add("EVENT name overruns", classCorrupt, "name", z(hdr, eventRec(0, 500, "snap", "")))
	add("EVENT empty name", classCorrupt, "empty name", z(hdr, eventRec(0, 0, "", `{"a":1}`)))
	add("EVENT name not UTF-8", classCorrupt, "not UTF-8", z(hdr, eventRec(0, 2, "a\xff", "")))
	add("EVENT detail not JSON", classCorrupt, "not JSON", z(hdr, eventRec(0, 1, "e", "{oops")))
	add("EVENT detail two values", classCorrupt, "not JSON", z(hdr, eventRec(0, 1, "e", "1 2")))
	add("EVENT detail not UTF-8", classCorrupt, "not UTF-8", z(hdr, eventRec(0, 1, "e", "\"\xff\"")))
	add("EVENT detail nested 100000 deep", classCorrupt, "", z(hdr, eventRec(0, 1, "e", strings.Repeat("[", 100000)+strings.Repeat("]", 99999))))
	add("EVENT with a scalar detail (control)", classClean, "", z(hdr, eventRec(0, 1, "e", "42")))
	add("EVENT without detail (control)", classClean, "", z(hdr, eventRec(0, 1, "e", "")))
	add("short END", classCorrupt, "shorter", z(hdr, record(3, []byte{1, 2, 3})))
	add("END reason overruns", classCorrupt, "reason", z(hdr, endRec(0, 0, 300, "x", "")))
	add("END reason not UTF-8", classCorrupt, "not UTF-8", z(hdr, endRec(0, 0, 2, "x\xff", "")))
	for _, o := range []string{"not json", "[1,2,3]", `"str"`, "42", "null", "true", `{"a":1} {"b":2}`} {
		add("END outcome "+o, classCorrupt, "outcome", z(hdr, data, endRec(0, 0, 1, "x", o)))
	}
	for _, o := range []string{`{"killed":"yes"}`, `{"verdicts":{}}`, `{"step":-1}`, `{"kill_signals":1.5}`, `{"verdicts":[{"tag":7}]}`, `{"rejected":[]}`,
		`{"snapshot_requests":"x"}`, `{"kaslr":[]}`, `{"a":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`} {
		add("END outcome "+o[:min(len(o), 40)], classCorrupt, "outcome", z(hdr, data, endRec(0, 0, 1, "x", o)))
	}
	add("END outcome not UTF-8", classCorrupt, "not UTF-8", z(hdr, data, endRec(0, 0, 1, "x", "{\"a\":\"\xff\"}")))
	add("record after END", classCorrupt, "follows the END", z(hdr, endRec(0, 0, 1, "x", ""), data))
	add("two ENDs", classCorrupt, "follows the END", z(hdr, endRec(0, 0, 1, "x", ""), endRec(0, 0, 1, "y", "")))
	add("END without outcome (control)", classClean, "", z(hdr, data, endRec(5, 1, 6, "signal", "")))

	// 6. Frames in the stream that the Assembler must survive (valid
	// traces: the gates reject them).
	add("oversize header (control)", classClean, "", z(hdr, dataRec(1, 1, 0, binary.LittleEndian.AppendUint32(append([]byte("MITS"), 0xff, 0xff, 0xff, 0xff), 0))))
	add("a frame cut at the stream's end (control)", classClean, "", z(hdr, dataRec(1, 1, 0, wire.AppendFrame(nil, wire.Stdout, []byte("abcdef"))[:19])))
	add("a forged SNRP (control)", classClean, "", z(hdr, dataRec(1, 1, 0, wire.AppendFrame(nil, wire.SnapshotReply, make([]byte, 520)))))
	add("garbage TX (control)", classClean, "", z(hdr, dataRec(1, 1, 0, bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 500))))
	return out
}

// repeated writes n bytes made of unit repeated (the last copy cut),
// in pieces, so that the test process itself never holds a bomb: the
// peak RSS a child reports counts its parent's too (Go starts children
// sharing its memory until exec).
func repeated(w io.Writer, unit []byte, n int) error {
	piece := bytes.Repeat(unit, max(1, (64<<10)/len(unit)))
	for n > 0 {
		k := min(n, len(piece))
		if _, err := w.Write(piece[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// bomb is a size bomb's decompressed stream, written in pieces.
type bomb struct {
	name  string
	class traceClass
	msg   string
	parts []func(w io.Writer) error
	// mismatch: see crafted.
	mismatch bool
}

func bytesPart(b []byte) func(w io.Writer) error {
	return func(w io.Writer) error { _, err := w.Write(b); return err }
}

func repeatPart(unit []byte, n int) func(w io.Writer) error {
	return func(w io.Writer) error { return repeated(w, unit, n) }
}

// recordHead is a record's kind and body length, for a body written in
// pieces after it.
func recordHead(kind byte, n int) []byte { return recordLen(kind, uint32(n)) }

// writeBombs writes the size bombs into dir: small files that decompress
// to what a careless reader would hold whole. Each is compressed as it
// is generated, in a streaming zstd frame.
func writeBombs(t *testing.T, dir string) []crafted {
	t.Helper()
	hdr := streamHeader(capture.Version, `{"backend":"test","scenario":"bomb"}`)
	sysRdy := dataRec(1, 1, 0, wire.AppendFrame(nil, wire.SysRdy, nil))
	big := capture.MaxDataSize
	dataHead := func(n int) []byte {
		return append(recordHead(1, 11+n), 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	}
	// END records whose outcome fills the 16 MiB record: 65536
	// verdicts (the most a run keeps) padded with blanks, and more
	// verdicts than a run keeps.
	const digest = `"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"`
	endParts := func(entries int, entry []byte) []func(io.Writer) error {
		last := bytes.TrimSuffix(entry, []byte(",")) // the last entry has no comma
		outcome := len(`{"verdicts":[`) + (entries-1)*len(entry) + len(last) + len(`]}`)
		head := recordHead(3, 14+1+outcome)
		head = append(head, make([]byte, 12)...) // t_ns, exit status
		head = binary.LittleEndian.AppendUint16(head, 1)
		head = append(head, 'x')
		return []func(io.Writer) error{bytesPart(hdr), bytesPart(sysRdy), bytesPart(head), bytesPart([]byte(`{"verdicts":[`)),
			repeatPart(entry, (entries-1)*len(entry)), bytesPart(last), bytesPart([]byte(`]}`))}
	}
	padded := []byte(`{"tag":"STIM","len":0,"sha256":` + digest + `}` + strings.Repeat(" ", (capture.MaxRecordSize-100)/capture.MaxOutcomeEntries-100) + `,`)
	compact := []byte(`{"tag":"STIM"},`)
	bombs := []bomb{
		{name: "a 16 MiB delivery of one oversize header and its resync", parts: []func(io.Writer) error{bytesPart(hdr), bytesPart(dataHead(big)), repeatPart([]byte{0x55}, big)}},
		{name: "one delivery of twice the verdict budget in empty STIM frames", parts: []func(io.Writer) error{bytesPart(hdr), bytesPart(dataHead(2 * 16 * dispatch.MaxVerdicts)), repeatPart(wire.AppendFrame(nil, wire.Stimulus, nil), 2*16*dispatch.MaxVerdicts)}},
		{name: "six 16 MiB deliveries", parts: []func(io.Writer) error{bytesPart(hdr),
			bytesPart(dataHead(big)), repeatPart([]byte{1}, big), bytesPart(dataHead(big)), repeatPart([]byte{2}, big),
			bytesPart(dataHead(big)), repeatPart([]byte{3}, big), bytesPart(dataHead(big)), repeatPart([]byte{4}, big),
			bytesPart(dataHead(big)), repeatPart([]byte{5}, big), bytesPart(dataHead(big)), repeatPart([]byte{6}, big)}},
		{name: "four 16 MiB records of an unknown kind", parts: []func(io.Writer) error{bytesPart(hdr),
			bytesPart(recordHead(99, capture.MaxRecordSize)), repeatPart([]byte("u"), capture.MaxRecordSize),
			bytesPart(recordHead(99, capture.MaxRecordSize)), repeatPart([]byte("u"), capture.MaxRecordSize),
			bytesPart(recordHead(99, capture.MaxRecordSize)), repeatPart([]byte("u"), capture.MaxRecordSize),
			bytesPart(recordHead(99, capture.MaxRecordSize)), repeatPart([]byte("u"), capture.MaxRecordSize),
			bytesPart(sysRdy)}},
		{name: "an EVENT with a 16 MiB detail", parts: []func(io.Writer) error{bytesPart(hdr),
			bytesPart(append(append(recordHead(2, capture.MaxRecordSize), make([]byte, 8)...), 1, 0, 'e', '"')),
			repeatPart([]byte("a"), capture.MaxRecordSize-13), bytesPart([]byte(`"`))}},
		{name: "an END outcome of 65536 verdicts in 16 MiB", mismatch: true, parts: endParts(capture.MaxOutcomeEntries, padded)},
		{name: "an END outcome of a million verdicts in 16 MiB", class: classCorrupt, msg: "over the 65536", parts: endParts((capture.MaxRecordSize-100)/len(compact), compact)},
		{name: "metadata at the 1 MiB bound", parts: []func(io.Writer) error{
			bytesPart(binary.LittleEndian.AppendUint32(append([]byte(capture.Magic), 1, 0, 0, 0), capture.MaxMetaSize)),
			bytesPart([]byte(`{"extra":{"a":"`)), repeatPart([]byte("m"), capture.MaxMetaSize-len(`{"extra":{"a":"`)-len(`"}}`)), bytesPart([]byte(`"}}`)),
			bytesPart(sysRdy)}},
		{name: "8 MiB of nesting in an EVENT detail", class: classCorrupt, msg: "not JSON", parts: []func(io.Writer) error{bytesPart(hdr),
			bytesPart(append(append(recordHead(2, 11+8<<20), make([]byte, 8)...), 1, 0, 'e')),
			repeatPart([]byte("["), 4<<20), repeatPart([]byte("]"), 4<<20)}},
		{name: "a 16 MiB body declared, 8 MiB there", class: classTruncated, msg: "truncated at byte", parts: []func(io.Writer) error{bytesPart(hdr), bytesPart(sysRdy),
			bytesPart(dataHead(big)), repeatPart([]byte{7}, 8<<20)}},
	}
	var out []crafted
	for i, b := range bombs {
		path := filepath.Join(dir, fmt.Sprintf("bomb%02d.zst", i))
		f, err := os.Create(path)
		require.NoError(t, err)
		enc, err := zstd.NewWriter(f, zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true), zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true))
		require.NoError(t, err)
		for _, part := range b.parts {
			require.NoError(t, part(enc))
		}
		require.NoError(t, enc.Close())
		require.NoError(t, f.Close())
		out = append(out, crafted{name: b.name, path: path, class: b.class, msg: b.msg, bomb: true, mismatch: b.mismatch})
	}
	// A flood bomb cut in the middle of a frame.
	path := filepath.Join(dir, "flood-cut.zst")
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, tracegen.WriteBomb(f, tracegen.BombFlood, 24<<20))
	st, err := f.Stat()
	require.NoError(t, err)
	require.NoError(t, f.Truncate(st.Size()/2))
	require.NoError(t, f.Close())
	out = append(out, crafted{name: "flood bomb, cut in half", path: path, class: classTruncated, msg: "truncated at byte", bomb: true})
	return out
}

// writeCrafted writes each trace into dir.
func writeCrafted(t *testing.T, dir string, traces []crafted) {
	t.Helper()
	for i := range traces {
		traces[i].path = filepath.Join(dir, fmt.Sprintf("t%03d.zst", i))
		require.NoError(t, os.WriteFile(traces[i].path, traces[i].file, 0o644))
		traces[i].file = nil
	}
}

var truncatedAt = regexp.MustCompile(`truncated at byte (\d+): `)

// checkTraceEverywhere runs every command that reads a trace on tr, each
// as its own process, and checks the one behaviour every command owes
// it: the same exit status, one line on stderr or none, the same
// truncation offset, no crash, and for a bomb a peak RSS under 64 MiB.
func checkTraceEverywhere(t *testing.T, tr crafted, corpusDir string) {
	codes := map[string]int{}
	offsets := map[string]string{}
	for _, rc := range readingCommands(tr.path, corpusDir) {
		cmd := rc.name
		r := runChild(t, childOpts{discard: cmd != "replay --json"}, rc.args...)
		assertNoCrash(t, r.stderr)
		switch {
		case cmd == "corpus export" && strings.Contains(r.stderr, "raise --max"):
			// Past its -max (1 MiB of TX by default) export refuses a
			// stream it would have to hold whole: its documented bound.
			assert.Equal(t, ExitUsage, r.code)
			assertOneLineError(t, r.stderr)
			continue
		case tr.mismatch && strings.HasPrefix(cmd, "replay"):
			assert.Equal(t, ExitCheck, r.code, "%s: replay checks the END outcome: %q", cmd, r.stderr)
			r.code = ExitOK // the same as the others but for the check
		}
		codes[cmd] = r.code
		assert.LessOrEqual(t, strings.Count(r.stderr, "\n"), 1, "%s: one line on stderr at most: %q", cmd, r.stderr)
		switch {
		case tr.bomb:
			assert.Less(t, r.rss, int64(readSideBound), "%s: peak RSS %.1f MiB", cmd, float64(r.rss)/(1<<20))
		}
		if tr.msg != "" {
			assert.Contains(t, r.stderr, tr.msg, cmd)
		}
		if m := truncatedAt.FindStringSubmatch(r.stderr); m != nil {
			offsets[cmd] = m[1]
			if cmd == "replay --json" {
				var rep struct {
					Truncated *struct {
						At int64 `json:"at"`
					} `json:"truncated"`
				}
				require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep), cmd)
				require.NotNil(t, rep.Truncated, "replay --json carries the truncation")
				assert.Equal(t, m[1], strconv.FormatInt(rep.Truncated.At, 10), "the same offset in the JSON")
			}
		} else {
			offsets[cmd] = ""
		}
		if tr.mismatch && strings.HasPrefix(cmd, "replay") {
			continue
		}
		switch tr.class {
		case classClean:
			assert.Equal(t, ExitOK, r.code, "%s: %q", cmd, r.stderr)
			assert.Empty(t, r.stderr, cmd)
		case classTruncated:
			assert.Equal(t, ExitOK, r.code, "%s: %q", cmd, r.stderr)
			assert.Regexp(t, `^ktstr: [a-z ]+: .*: truncated at byte \d+: .+\n$`, r.stderr, cmd)
		case classCorrupt:
			assert.Equal(t, ExitUsage, r.code, "%s: %q", cmd, r.stderr)
			assertOneLineError(t, r.stderr)
		case classEither:
			assert.Contains(t, []int{ExitOK, ExitUsage}, r.code, "%s: %q", cmd, r.stderr)
			if r.code == ExitUsage {
				assertOneLineError(t, r.stderr)
			}
		}
	}
	first := codes["replay"]
	for cmd, c := range codes {
		assert.Equal(t, first, c, "%s exits as replay does: %v", cmd, codes)
	}
	for cmd, o := range offsets {
		assert.Equal(t, offsets["replay"], o, "%s says the same truncation as replay: %v", cmd, offsets)
	}
}

// TestCorruptAndCraftedTraces runs every command that reads a trace on
// each generated trace (docs/protocol.md §8: one behaviour everywhere).
func TestCorruptAndCraftedTraces(t *testing.T) {
	dir := t.TempDir()
	traces := craftedTraces(t)
	writeCrafted(t, dir, traces)
	var n [4]int
	for _, tr := range traces {
		n[tr.class]++
	}
	t.Logf("%d traces: %d clean, %d truncated, %d corrupt, %d damaged either way", len(traces), n[classClean], n[classTruncated], n[classCorrupt], n[classEither])
	require.GreaterOrEqual(t, len(traces)-n[classClean], 150, "the issue asks for at least 150 corrupt or crafted traces")
	require.NotZero(t, n[classClean], "controls")
	for i, tr := range traces {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			checkTraceEverywhere(t, tr, filepath.Join(dir, fmt.Sprintf("corpus-%d", i)))
		})
	}
}

// TestSizeBombsStayBounded runs every command that reads a trace on the
// crafted size bombs: a peak RSS under 64 MiB each, and the behaviour of
// TestCorruptAndCraftedTraces.
func TestSizeBombsStayBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("decompresses 16 MiB records (-short)")
	}
	dir := t.TempDir()
	traces := writeBombs(t, dir)
	debug.FreeOSMemory()
	for i, tr := range traces {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			checkTraceEverywhere(t, tr, filepath.Join(dir, fmt.Sprintf("corpus-%d", i)))
		})
	}
}
