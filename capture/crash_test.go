package capture

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// childPayload is the delivery the crash child writes as record seq.
func childPayload(seq int) []byte {
	rng := rand.New(rand.NewPCG(uint64(seq), 7))
	b := make([]byte, rng.IntN(3000))
	for i := range b {
		// Half random, half repetitive, so frames span several blocks
		// and compress unevenly.
		if i%2 == 0 {
			b[i] = byte(rng.Uint32())
		} else {
			b[i] = byte(seq)
		}
	}
	return b
}

// runChild is the body of the child process of TestKilledWriter: it
// writes DATA records with sequence numbers as timestamps to path for
// ever, closing frames at random (by Flush, by an event, or by the
// timer), and after each explicit close prints to stdout the sequence
// number of the last record in it. It runs until killed.
func runChild(path string) int {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	w, err := NewWriter(f, Meta{ToolVersion: "crash-child"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	out := bufio.NewWriter(os.Stdout)
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	for seq := 0; ; seq++ {
		if err := w.WriteData(TX, BulkPort, int64(seq), childPayload(seq)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		switch rng.IntN(400) {
		case 0:
			err = w.Flush()
		case 1:
			err = w.WriteEvent(int64(seq), "mark", json.RawMessage(`{"seq":`+strconv.Itoa(seq)+`}`))
		case 2:
			time.Sleep(FlushInterval / 5) // let the timer close some frames
			continue
		default:
			continue
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintln(out, seq)
		out.Flush()
	}
}

// TestKilledWriter kills a trace-writing child with SIGKILL at random
// moments and checks that the reader recovers every record the child
// had closed a frame over, in order and intact, and then reports a clean
// end or truncation, never corruption or a panic.
func TestKilledWriter(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes; skipped with -short")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	truncated := 0
	const rounds = 10
	for round := range rounds {
		path := filepath.Join(dir, fmt.Sprintf("trace%d.zst", round))
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), childEnv+"="+path)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())

		lines := make(chan int, 1<<16)
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if n, err := strconv.Atoi(sc.Text()); err == nil {
					lines <- n
				}
			}
		}()
		// Kill at a random moment after the child has closed at least
		// one frame of records.
		lastClosed := -1
		select {
		case lastClosed = <-lines:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("child wrote no frame in 10s; stderr: %s", stderr.String())
		}
		time.Sleep(time.Duration(rng.IntN(150_000)) * time.Microsecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		<-readDone
		err = cmd.Wait()
		require.Error(t, err)
		require.Contains(t, err.Error(), "killed", "child stderr: %s", stderr.String())
		close(lines)
		for n := range lines {
			lastClosed = max(lastClosed, n)
		}
		require.GreaterOrEqual(t, lastClosed, 0)

		f, err := os.Open(path)
		require.NoError(t, err)
		r, err := NewReader(f)
		require.NoError(t, err)
		assert.Equal(t, "crash-child", r.Meta().ToolVersion)
		next := 0
		for {
			rec, err := r.Next()
			if err != nil {
				if err != io.EOF {
					require.ErrorIs(t, err, ErrTruncated, "round %d", round)
					truncated++
				}
				break
			}
			if rec.Kind == KindEvent {
				continue
			}
			require.Equal(t, KindData, rec.Kind)
			require.Equal(t, int64(next), rec.TimeNS, "round %d: records out of order", round)
			require.Equal(t, childPayload(next), rec.Data, "round %d: record %d damaged", round, next)
			next++
		}
		require.NoError(t, f.Close())
		assert.Greater(t, next, lastClosed, "round %d: record %d was in a closed frame but was not recovered", round, lastClosed)
		t.Logf("round %d: %d records recovered, last closed frame ended at record %d", round, next, lastClosed)
	}
	t.Logf("%d of %d rounds ended in a truncated frame", truncated, rounds)
}
