package capture

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newCompressor returns a function compressing a stream as one zstd
// frame.
func newCompressor(t testing.TB) func(stream []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	require.NoError(t, err)
	return func(stream []byte) []byte { return enc.EncodeAll(stream, nil) }
}

// header returns a decompressed trace header with the given version and
// metadata bytes.
func header(version uint32, meta string) []byte {
	b := []byte(Magic)
	b = binary.LittleEndian.AppendUint32(b, version)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(meta)))
	return append(b, meta...)
}

// rec returns one encoded record.
func rec(kind Kind, body []byte) []byte {
	b := []byte{byte(kind)}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

// recLen returns a record header declaring n body bytes, and no body.
func recLen(kind Kind, n uint32) []byte {
	return binary.LittleEndian.AppendUint32([]byte{byte(kind)}, n)
}

// dataBody returns a DATA body.
func dataBody(dir Direction, port uint16, t int64, data string) []byte {
	b := []byte{byte(dir)}
	b = binary.LittleEndian.AppendUint16(b, port)
	b = binary.LittleEndian.AppendUint64(b, uint64(t))
	return append(b, data...)
}

// eventBody returns an EVENT body whose name length field is nameLen.
func eventBody(t int64, nameLen uint16, name, detail string) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(t))
	b = binary.LittleEndian.AppendUint16(b, nameLen)
	return append(append(b, name...), detail...)
}

// endBody returns an END body.
func endBody(t int64, status int32, reason, outcome string) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(t))
	b = binary.LittleEndian.AppendUint32(b, uint32(status))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(reason)))
	return append(append(b, reason...), outcome...)
}

// cat concatenates byte slices.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestCorruptTraces(t *testing.T) {
	compress := newCompressor(t)
	hdr := header(Version, `{"tool_version":"t"}`)
	good := rec(KindData, dataBody(TX, 1, 10, "frame"))
	// A valid trace with a corrupt zstd byte in its last frame's
	// compressed data.
	var zb bytes.Buffer
	w, err := NewWriter(&zb, Meta{})
	require.NoError(t, err)
	require.NoError(t, w.WriteData(TX, 1, 0, []byte(strings.Repeat("a compressible line of text, more or less\n", 200))))
	require.NoError(t, w.Close())
	badZstd := bytes.Clone(zb.Bytes())
	badZstd[len(badZstd)-20] ^= 0x55

	// windowed returns the header and a 200 KiB record compressed as one
	// frame declaring the given window (more than one block, so the
	// encoder cannot declare the content size instead).
	windowed := func(window int) []byte {
		var b bytes.Buffer
		e, err := zstd.NewWriter(&b, zstd.WithWindowSize(window), zstd.WithEncoderConcurrency(1))
		require.NoError(t, err)
		_, err = e.Write(cat(hdr, rec(KindData, dataBody(TX, 1, 0, strings.Repeat("x", 200<<10)))))
		require.NoError(t, err)
		require.NoError(t, e.Close())
		return b.Bytes()
	}
	// A skippable frame (magic 0x184D2A50, length, payload).
	skippable := cat([]byte{0x50, 0x2a, 0x4d, 0x18}, binary.LittleEndian.AppendUint32(nil, 3), []byte("abc"))

	tests := []struct {
		name     string
		trace    []byte
		want     error  // nil: a clean end (the positive control)
		msg      string // substring of the error
		wantRecs int    // records returned before the error
	}{
		{"valid (control)", compress(cat(hdr, good, good)), nil, "", 2},
		{"valid, unknown kind skipped (control)", compress(cat(hdr, good, rec(200, []byte("future")), rec(4, nil), good)), nil, "", 2},
		{"valid, END last (control)", compress(cat(hdr, good, rec(KindEnd, endBody(5, 0, "poweroff", `{"killed":false}`)))), nil, "", 2},
		{"valid, skippable frames (control)", cat(compress(cat(hdr, good)), skippable, compress(good)), nil, "", 2},
		{"valid, 8 MiB window (control)", windowed(MaxWindow), nil, "", 1},
		{"window over the bound", windowed(2 * MaxWindow), ErrCorrupt, "declares a window over", 0},
		{"zero-length file", nil, ErrTruncated, "empty", 0},
		{"empty zstd frame", compress(nil), ErrTruncated, "empty", 0},
		{"not zstd", []byte("this is a plain text file, not a trace\n"), ErrCorrupt, "not zstd-compressed", 0},
		{"uncompressed trace stream", cat(hdr, good), ErrCorrupt, "not zstd-compressed", 0},
		{"bad magic", compress(cat([]byte("NOTATRCE"), hdr[8:], good)), ErrCorrupt, "bad magic", 0},
		{"short bad magic", compress([]byte("KTS!")), ErrCorrupt, "bad magic", 0},
		{"unknown version", compress(cat(header(2, `{}`), good)), ErrVersion, "version 2", 0},
		{"version zero", compress(cat(header(0, `{}`), good)), ErrVersion, "version 0", 0},
		{"huge metadata length", compress(cat(header(Version, "")[:12], []byte{0xff, 0xff, 0xff, 0xff}, []byte("{}"))), ErrCorrupt, "metadata declares", 0},
		{"metadata just over bound", compress(cat(header(Version, "")[:12], binary.LittleEndian.AppendUint32(nil, MaxMetaSize+1))), ErrCorrupt, "metadata declares", 0},
		{"garbage metadata", compress(cat(header(Version, "{not json at all"), good)), ErrCorrupt, "metadata", 0},
		{"metadata not an object", compress(cat(header(Version, "null"), good)), ErrCorrupt, "metadata", 0},
		{"metadata field of wrong type", compress(cat(header(Version, `{"cpus":"two"}`), good)), ErrCorrupt, "metadata", 0},
		{"metadata cut short", compress(header(Version, `{"tool_version":"t"}`)[:20]), ErrTruncated, "metadata", 0},
		{"huge record length", compress(cat(hdr, good, recLen(KindData, 0xFFFFFFFF))), ErrCorrupt, "over the", 1},
		{"two traces joined", cat(compress(cat(hdr, good)), compress(cat(hdr, good))), ErrCorrupt, "a second trace header", 1},
		{"record length just over bound", compress(cat(hdr, good, recLen(KindData, MaxRecordSize+1))), ErrCorrupt, "over the", 1},
		{"unknown kind over bound", compress(cat(hdr, good, recLen(99, MaxRecordSize+1))), ErrCorrupt, "over the", 1},
		{"record at bound, body missing", compress(cat(hdr, good, recLen(KindData, MaxRecordSize))), ErrTruncated, "body of a data record", 1},
		{"reserved kind 0", compress(cat(hdr, good, rec(0, nil))), ErrCorrupt, "kind 0", 1},
		{"short DATA body", compress(cat(hdr, good, rec(KindData, []byte{1, 1, 0}))), ErrCorrupt, "shorter", 1},
		{"bad DATA direction", compress(cat(hdr, good, rec(KindData, dataBody(3, 1, 0, "x")))), ErrCorrupt, "direction", 1},
		{"short EVENT body", compress(cat(hdr, good, rec(KindEvent, []byte{1}))), ErrCorrupt, "shorter", 1},
		{"EVENT name overruns", compress(cat(hdr, good, rec(KindEvent, eventBody(0, 500, "snap", "")))), ErrCorrupt, "name", 1},
		{"EVENT with an empty name", compress(cat(hdr, good, rec(KindEvent, eventBody(0, 0, "", `{"a":1}`)))), ErrCorrupt, "empty name", 1},
		{"valid, one-byte EVENT name (control)", compress(cat(hdr, good, rec(KindEvent, eventBody(0, 1, "s", `{"a":1}`)))), nil, "", 2},
		{"EVENT detail not JSON", compress(cat(hdr, good, rec(KindEvent, eventBody(0, 4, "snap", "{oops")))), ErrCorrupt, "JSON", 1},
		{"EVENT name not UTF-8", compress(cat(hdr, good, rec(KindEvent, eventBody(0, 2, "s\xff", `{"a":1}`)))), ErrCorrupt, "not UTF-8", 1},
		{"EVENT detail string not UTF-8", compress(cat(hdr, good, rec(KindEvent, eventBody(0, 1, "s", "\"\xff\"")))), ErrCorrupt, "not UTF-8", 1},
		{"valid, EVENT detail with escapes and U+2028 (control)", compress(cat(hdr, good, rec(KindEvent, eventBody(0, 1, "s", "\"a\\n\u2028\"")))), nil, "", 2},
		{"metadata not UTF-8", compress(cat(header(Version, "{\"scenario\":\"\xfe\"}"), good)), ErrCorrupt, "not valid UTF-8", 0},
		{"valid, metadata with an escaped newline (control)", compress(cat(header(Version, `{"scenario":"a\nb"}`), good)), nil, "", 1},
		{"short END body", compress(cat(hdr, good, rec(KindEnd, []byte{1, 2}))), ErrCorrupt, "shorter", 1},
		{"END reason not UTF-8", compress(cat(hdr, good, rec(KindEnd, endBody(0, 0, "x\xff", "")))), ErrCorrupt, "not UTF-8", 1},
		{"END outcome not UTF-8", compress(cat(hdr, good, rec(KindEnd, endBody(0, 0, "x", "{\"a\":\"\xff\"}")))), ErrCorrupt, "not UTF-8", 1},
		{"END outcome an array", compress(cat(hdr, good, rec(KindEnd, endBody(0, 0, "x", "[1,2,3]")))), ErrCorrupt, "not a JSON object", 1},
		{"valid, END outcome an object (control)", compress(cat(hdr, good, rec(KindEnd, endBody(0, 0, "x", ` {"killed":false}`)))), nil, "", 2},
		{"END outcome not JSON", compress(cat(hdr, good, rec(KindEnd, endBody(0, 0, "x", "not json")))), ErrCorrupt, "JSON", 1},
		{"record after END", compress(cat(hdr, rec(KindEnd, endBody(0, 0, "x", "")), good)), ErrCorrupt, "follows the END", 1},
		{"record header cut", compress(cat(hdr, good, good[:3])), ErrTruncated, "record header", 1},
		{"record body cut", compress(cat(hdr, good, good[:len(good)-1])), ErrTruncated, "body", 1},
		{"corrupt zstd bytes", badZstd, ErrCorrupt, "zstd", 0},
		{"zstd frame cut", zb.Bytes()[:len(zb.Bytes())-3], ErrTruncated, "ends inside", 0},
		{"trailing garbage after frames", cat(compress(cat(hdr, good)), []byte("garbage!")), ErrCorrupt, "zstd", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, recs, err := readAll(tc.trace)
			assert.Len(t, recs, tc.wantRecs)
			if tc.want == nil {
				require.ErrorIs(t, err, io.EOF)
				return
			}
			require.ErrorIs(t, err, tc.want)
			assert.Contains(t, err.Error(), tc.msg)
			assert.NotContains(t, err.Error(), "\n", "error must be one line")
			assert.Equal(t, 1, sentinels(err), "error must wrap exactly one sentinel: %v", err)
		})
	}
}

// smallTrace returns a trace of several frames holding every kind of
// record, with the records it holds.
func smallTrace(t *testing.T) ([]byte, []Record) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Meta{ToolVersion: "small"})
	require.NoError(t, err)
	recs := sampleRecords(false)
	require.NoError(t, writeRecords(w, recs[:3]))
	require.NoError(t, w.Flush())
	require.NoError(t, writeRecords(w, recs[3:]))
	require.NoError(t, w.Close())
	return buf.Bytes(), recs
}

// TestTruncatedEverywhere cuts a small trace at every byte offset, and
// its decompressed stream at every offset, and checks that the reader
// returns a prefix of the records and then a clean end exactly at frame
// (or record) boundaries and truncation everywhere else.
func TestTruncatedEverywhere(t *testing.T) {
	full, want := smallTrace(t)
	_, got, err := readAll(full)
	require.ErrorIs(t, err, io.EOF, "control: the whole trace reads cleanly")
	require.Len(t, got, len(want))

	clean := 0
	for i := 0; i < len(full); i++ {
		_, got, err := readAll(full[:i])
		if err == io.EOF {
			clean++
		} else {
			require.ErrorIs(t, err, ErrTruncated, "cut at %d of %d", i, len(full))
			require.Equal(t, 1, sentinels(err))
		}
		require.LessOrEqual(t, len(got), len(want))
		for j := range got {
			require.Equal(t, want[j], got[j], "cut at %d: record %d", i, j)
		}
	}
	// Cuts at the ends of the header frame and of the first record
	// frame read cleanly; the full trace has four frames (header, two
	// records frames closed by Flush and by the event, the rest).
	assert.GreaterOrEqual(t, clean, 2)

	compress := newCompressor(t)
	stream, err := zstd.NewReader(bytes.NewReader(full))
	require.NoError(t, err)
	dec, err := io.ReadAll(stream)
	require.NoError(t, err)
	boundaries := map[int]bool{}
	off := headerFixed + int(binary.LittleEndian.Uint32(dec[12:]))
	for off < len(dec) {
		boundaries[off] = true
		off += recordHead + int(binary.LittleEndian.Uint32(dec[off+1:]))
	}
	require.Equal(t, len(dec), off)
	for i := 0; i < len(dec); i++ {
		_, got, err := readAll(compress(dec[:i]))
		if boundaries[i] {
			require.ErrorIs(t, err, io.EOF, "decompressed cut at record boundary %d", i)
		} else {
			require.ErrorIs(t, err, ErrTruncated, "decompressed cut at %d", i)
		}
		for j := range got {
			require.Equal(t, want[j], got[j])
		}
	}
}

// TestCorruptEveryByte flips each byte of a small trace in turn: the
// reader must never panic and must classify every error.
func TestCorruptEveryByte(t *testing.T) {
	full, _ := smallTrace(t)
	detected := 0
	for i := range full {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			b := bytes.Clone(full)
			b[i] ^= mask
			_, _, err := readAll(b)
			if err != io.EOF {
				require.Equal(t, 1, sentinels(err), "flip %#x at %d: %v", mask, i, err)
				detected++
			}
		}
	}
	// The frames carry checksums: nearly every flip must be caught.
	assert.Greater(t, detected, 3*len(full)*9/10)
}

func TestLongestList(t *testing.T) {
	tests := []struct {
		json string
		want int
	}{
		{`{}`, 0},
		{`{"a":[]}`, 0},
		{`{"a":[ ]}`, 0},
		{`{"a":[1]}`, 1},
		{`{"a":[1,2,3],"b":[1]}`, 3},
		{`{"a":[""]}`, 1},
		{`{"a":["x,y","[,]"]}`, 2},
		{`{"a":["\",\"", 2]}`, 2},
		{`{"a":[{"b":[1,2,3,4]},[5,6]]}`, 2},
		{`{"a":{"b":[1,2,3,4]}}`, 0},
		{`{"a":[[],[],[]]}`, 3},
		{`{"a":[null,true,false,-1.5e3]}`, 4},
		{`{"verdicts":[{"tag":"STIM"},{"tag":"SCDX"}],"kernel_ops":[{"id":1}]}`, 2},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, longestList([]byte(tt.json)), tt.json)
	}
}

func TestOutcomeListBound(t *testing.T) {
	compress := newCompressor(t)
	hdr := header(Version, `{}`)
	list := func(n int) string {
		return `{"verdicts":[` + strings.TrimSuffix(strings.Repeat(`{},`, n), ",") + `]}`
	}
	for _, tc := range []struct {
		n       int
		corrupt bool
	}{{MaxOutcomeEntries, false}, {MaxOutcomeEntries + 1, true}} {
		_, recs, err := readAll(compress(cat(hdr, rec(KindEnd, endBody(0, 0, "x", list(tc.n))))))
		if tc.corrupt {
			require.ErrorIs(t, err, ErrCorrupt)
			assert.Contains(t, err.Error(), "over the 65536")
			assert.Empty(t, recs)
		} else {
			require.ErrorIs(t, err, io.EOF)
			assert.Len(t, recs, 1)
		}
		var buf bytes.Buffer
		w, err := NewWriter(&buf, Meta{})
		require.NoError(t, err)
		err = w.WriteEnd(End{Reason: "x", Outcome: []byte(list(tc.n))})
		if tc.corrupt {
			assert.ErrorIs(t, err, ErrTooLarge, "the Writer refuses what the Reader would")
		} else {
			assert.NoError(t, err)
		}
		w.Close()
	}
}
