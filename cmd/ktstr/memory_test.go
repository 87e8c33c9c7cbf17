package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/internal/tracegen"
)

// readSideBound is the peak RSS every command that reads a trace stays
// under, whatever the trace holds (docs/protocol.md, invariant 7).
const readSideBound = 64 << 20

// childRSS runs ktstr args in a child process (TestKtstrChild), its
// stdout to /dev/null, and returns its exit status, stderr and peak RSS
// in bytes.
func childRSS(t *testing.T, args ...string) (int, string, int64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKtstrChild$")
	cmd.Env = append(os.Environ(), "KTSTR_CHILD_ARGS="+strings.Join(args, "\x1f"))
	hwm := measureHWM(t, cmd)
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer devnull.Close()
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = devnull, &stderr
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return code, stderr.String(), hwm()
}

// TestReadSideCommandsStayBounded runs every command that reads a trace
// on bombs: traces of a few kilobytes to a few megabytes on disk that
// hold 64 MiB of frames shaped to grow what a reader keeps per verdict,
// per delivery or per tag. Each must stay under 64 MiB of peak RSS and
// finish with an answer, not a crash.
func TestReadSideCommandsStayBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and reads 64 MiB bombs (-short)")
	}
	dir := t.TempDir()
	sizes := map[string]int{tracegen.BombFlood: 64 << 20, tracegen.BombTiny: 8 << 20, tracegen.BombTags: 32 << 20, tracegen.BombBytes: 4 << 20}
	for _, shape := range tracegen.Bombs() {
		path := filepath.Join(dir, shape+".zst")
		f, err := os.Create(path)
		require.NoError(t, err)
		require.NoError(t, tracegen.WriteBomb(f, shape, sizes[shape]))
		require.NoError(t, f.Close())
		st, err := os.Stat(path)
		require.NoError(t, err)
		t.Logf("bomb %s: %d MiB of TX in %d KiB on disk", shape, sizes[shape]>>20, st.Size()>>10)

		for _, args := range [][]string{
			{"replay", path},
			{"replay", "--json", path},
			{"replay", "--mutate", "40", path},
			{"replay", "--chunking", "whole", path},
			{"trace", "minimize", "--until", "sys_rdy", "--force", "-o", filepath.Join(dir, "min.zst"), path},
			{"trace", "show", path},
			{"trace", "stat", path},
			{"corpus", "export", "-o", filepath.Join(dir, "corpus"), path},
		} {
			name := fmt.Sprintf("%s/%s", shape, strings.Join(args[:len(args)-1], " "))
			t.Run(name, func(t *testing.T) {
				code, stderr, rss := childRSS(t, args...)
				t.Logf("peak RSS %.1f MiB, exit %d", float64(rss)/(1<<20), code)
				assert.Less(t, rss, int64(readSideBound), "peak RSS")
				assert.NotContains(t, stderr, "panic", "no panic")
				assert.Contains(t, []int{0, 1, 2}, code, "an answer, not a crash: %s", stderr)
			})
		}
	}
}

// TestChildRSSMeasures is the positive control of the bound above: a
// child that holds 96 MiB is measured above 64 MiB.
func TestChildRSSMeasures(t *testing.T) {
	if os.Getenv("KTSTR_CHILD_HOLD") != "" {
		b := make([]byte, 96<<20)
		for i := range b {
			b[i] = byte(i)
		}
		fmt.Println(b[len(b)/2])
		writeHWM()
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildRSSMeasures$")
	cmd.Env = append(os.Environ(), "KTSTR_CHILD_HOLD=1")
	hwm := measureHWM(t, cmd)
	require.NoError(t, cmd.Run())
	rss := hwm()
	assert.Greater(t, rss, int64(readSideBound))
}
