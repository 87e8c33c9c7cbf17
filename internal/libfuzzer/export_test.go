package libfuzzer

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeT records what Exporter's function does with its T.
type fakeT struct {
	name  string
	fatal []any
}

func (f *fakeT) Name() string      { return f.name }
func (f *fakeT) Fatal(args ...any) { f.fatal = append(f.fatal, args...) }

// TestExporter: unset, there is nothing to call; set, every call writes
// the libFuzzer encoding of its arguments under the target's name, named
// by its SHA-256, and a write that fails fails the input.
func TestExporter(t *testing.T) {
	t.Setenv(ExportEnv, "")
	require.Nil(t, Exporter(), "with ExportEnv unset a fuzzing run must pay nothing")

	dir := t.TempDir()
	t.Setenv(ExportEnv, dir)
	export := Exporter()
	require.NotNil(t, export)
	ft := &fakeT{name: "FuzzExample/seed#3"}
	export(ft, []byte("stream"), true)
	export(ft, []byte("stream"), true) // the same input again: the same file
	export(ft, []byte{}, false)
	require.Empty(t, ft.fatal)

	entries, err := os.ReadDir(filepath.Join(dir, "FuzzExample"))
	require.NoError(t, err)
	require.Len(t, entries, 2)
	for _, args := range [][]any{{[]byte("stream"), true}, {[]byte{}, false}} {
		raw, err := Encode(args...)
		require.NoError(t, err)
		sum := sha256.Sum256(raw)
		got, err := os.ReadFile(filepath.Join(dir, "FuzzExample", hex.EncodeToString(sum[:])))
		require.NoError(t, err, "the encoding of %v", args)
		assert.Equal(t, raw, got)
	}

	// Positive control: an unwritable directory fails the input.
	blocked := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(blocked, nil, 0o644))
	t.Setenv(ExportEnv, blocked)
	bad := &fakeT{name: "FuzzExample"}
	Exporter()(bad, []byte("x"))
	require.Len(t, bad.fatal, 1)
	assert.Contains(t, fmt.Sprint(bad.fatal...), "libfuzzer:")

	// And an argument libFuzzer cannot carry fails it too.
	t.Setenv(ExportEnv, dir)
	odd := &fakeT{name: "FuzzExample"}
	Exporter()(odd, 1.5)
	require.Len(t, odd.fatal, 1)
	assert.Contains(t, fmt.Sprint(odd.fatal...), "unsupported argument type")
}
