package corpus

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/replay"
)

// TestMarshalGoFuzzFileMatchesGo checks the file against the format of
// Go's internal/fuzz (marshalCorpusFile writes `[]byte(%q)`), for every
// byte value and a few awkward strings.
func TestMarshalGoFuzzFileMatchesGo(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for _, data := range [][]byte{nil, {}, all, []byte("\"\\\n\r`"), []byte("héllo \xff\xfe"), []byte("\u2028")} {
		content := MarshalGoFuzzFile(data)
		assert.Equal(t, fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data), string(content))
		got, err := UnmarshalGoFuzzFile(content)
		require.NoError(t, err)
		assert.Equal(t, string(data), string(got))
	}
}

func TestUnmarshalGoFuzzFile(t *testing.T) {
	tests := []struct {
		name, in string
		want     string
		ok       bool
	}{
		{"go's own output", "go test fuzz v1\n[]byte(\"\\x00ab\")\n", "\x00ab", true},
		{"crlf line ends", "go test fuzz v1\r\n[]byte(\"ab\")\r\n", "ab", true},
		{"no final newline", "go test fuzz v1\n[]byte(\"ab\")", "ab", true},
		{"raw string literal", "go test fuzz v1\n[]byte(`a\\b`)\n", "a\\b", true},
		{"empty", "", "", false},
		{"wrong version", "go test fuzz v2\n[]byte(\"ab\")\n", "", false},
		{"two values", "go test fuzz v1\n[]byte(\"a\")\n[]byte(\"b\")\n", "", false},
		{"string value", "go test fuzz v1\nstring(\"ab\")\n", "", false},
		{"bad quoting", "go test fuzz v1\n[]byte(\"ab)\n", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := UnmarshalGoFuzzFile([]byte(tt.in))
			if !tt.ok {
				require.ErrorIs(t, err, ErrGoFuzzFile)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(got))
		})
	}
}

func TestWriteGoFuzzFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "FuzzDispatch")
	p1, err := WriteGoFuzzFile(dir, []byte("frame bytes"))
	require.NoError(t, err)
	content, err := os.ReadFile(p1)
	require.NoError(t, err)
	sum := sha256.Sum256(content)
	assert.Equal(t, fmt.Sprintf("%x", sum)[:16], filepath.Base(p1), "named like go test names its corpus files")

	p2, err := WriteGoFuzzFile(dir, []byte("frame bytes"))
	require.NoError(t, err)
	assert.Equal(t, p1, p2, "the same input gives the same file")
	p3, err := WriteGoFuzzFile(dir, []byte("other bytes"))
	require.NoError(t, err)
	assert.NotEqual(t, p1, p3)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 2, "no temporary files left behind")

	_, err = WriteGoFuzzFile(filepath.Join(p1, "sub"), []byte("x"))
	assert.Error(t, err, "a directory under a file cannot be created")
}

func TestExportTrace(t *testing.T) {
	seed := Seeds()[len(Seeds())-1]
	var trace bytes.Buffer
	require.NoError(t, seed.WriteTrace(&trace))

	in, s, err := ExportTrace(bytes.NewReader(trace.Bytes()), DefaultExportLimit)
	require.NoError(t, err)
	assertSameStream(t, seed.Stream(), s, "exported stream")
	assertSameStream(t, seed.Stream(), DecodeDispatchInput(in), "decoded input")

	t.Run("truncated trace exports its prefix", func(t *testing.T) {
		// Cutting the file ends it inside a zstd frame: the reader
		// returns the deliveries of the complete blocks before the cut.
		cut := trace.Bytes()[:trace.Len()-3]
		_, s, err := ExportTrace(bytes.NewReader(cut), DefaultExportLimit)
		require.NoError(t, err)
		assert.LessOrEqual(t, len(s.Data), len(seed.Bytes()))
		assert.Equal(t, string(seed.Bytes()[:len(s.Data)]), string(s.Data))
	})
	t.Run("corrupt trace", func(t *testing.T) {
		_, _, err := ExportTrace(bytes.NewReader([]byte("not a trace at all")), DefaultExportLimit)
		require.ErrorIs(t, err, replay.ErrBadTrace)
	})
	t.Run("over the limit", func(t *testing.T) {
		_, _, err := ExportTrace(bytes.NewReader(trace.Bytes()), int64(len(seed.Bytes())-1))
		require.ErrorIs(t, err, ErrTooLarge)
		_, _, err = ExportTrace(bytes.NewReader(trace.Bytes()), int64(len(seed.Bytes())))
		require.NoError(t, err, "a stream exactly at the limit exports")
	})
}

func TestExportTraceFile(t *testing.T) {
	dir := t.TempDir()
	seed := Seeds()[0]
	src := filepath.Join(dir, "seed.zst")
	var trace bytes.Buffer
	require.NoError(t, seed.WriteTrace(&trace))
	require.NoError(t, os.WriteFile(src, trace.Bytes(), 0o644))

	out, s, err := ExportTraceFile(src, filepath.Join(dir, "out"), DefaultExportLimit)
	require.NoError(t, err)
	assertSameStream(t, seed.Stream(), s, "exported stream")
	content, err := os.ReadFile(out)
	require.NoError(t, err)
	in, err := UnmarshalGoFuzzFile(content)
	require.NoError(t, err)
	assertSameStream(t, seed.Stream(), DecodeDispatchInput(in), "file content")

	_, _, err = ExportTraceFile(filepath.Join(dir, "missing.zst"), dir, DefaultExportLimit)
	require.ErrorIs(t, err, os.ErrNotExist)
}
