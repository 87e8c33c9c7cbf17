package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ktstr/ktstr/internal/tracegen"
)

// BenchmarkReplayMemory runs `ktstr replay` (in a child process, through
// the same run() as the binary) on a trace of 256 MiB of TX bytes and
// reports the child's peak resident memory. Target: < 64 MiB.
func BenchmarkReplayMemory(b *testing.B) {
	path := filepath.Join(b.TempDir(), "big.zst")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := tracegen.Write(f, 256<<20); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var peak int64
	for range b.N {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKtstrChild$")
		cmd.Env = append(os.Environ(), "KTSTR_CHILD_ARGS=replay\x1f"+path)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("ktstr replay: %v\n%s", err, out)
		}
		if !bytes.Contains(out, []byte("hold")) {
			b.Fatalf("unexpected report:\n%s", out)
		}
		peak = max(peak, cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) // KiB
	}
	b.ReportMetric(256, "TX-MiB")
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
}

// TestKtstrChild runs ktstr with the arguments in KTSTR_CHILD_ARGS
// (separated by 0x1f, the unit separator: an environment value cannot
// hold NUL) and exits with its status: the child of benchmarks that
// measure the command as a process.
func TestKtstrChild(t *testing.T) {
	args := os.Getenv("KTSTR_CHILD_ARGS")
	if args == "" {
		t.Skip("only runs as a child of a benchmark")
	}
	os.Exit(run(strings.Split(args, "\x1f"), os.Stdout, os.Stderr))
}
