package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

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
		hwm := measureHWM(b, cmd)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("ktstr replay: %v\n%s", err, out)
		}
		if !bytes.Contains(out, []byte("hold")) {
			b.Fatalf("unexpected report:\n%s", out)
		}
		peak = max(peak, hwm()>>10) // KiB
	}
	b.ReportMetric(256, "TX-MiB")
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
}

// TestKtstrChild runs ktstr with the arguments in KTSTR_CHILD_ARGS
// (separated by 0x1f, the unit separator: an environment value cannot
// hold NUL) and exits with its status: the child of the tests and
// benchmarks that run the command as a process. KTSTR_CHILD_FSIZE, if
// set, is the file size limit (RLIMIT_FSIZE, as `ulimit -f` sets) it
// runs under.
func TestKtstrChild(t *testing.T) {
	args, ok := os.LookupEnv("KTSTR_CHILD_ARGS")
	if !ok {
		t.Skip("only runs as a child of a test or benchmark")
	}
	if v := os.Getenv("KTSTR_CHILD_FSIZE"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: n, Max: n}); err != nil {
			t.Fatal(err)
		}
	}
	var argv []string // none for an empty value
	if args != "" {
		argv = strings.Split(args, "\x1f")
	}
	code := run(argv, os.Stdout, os.Stderr)
	writeHWM()
	os.Exit(code)
}

// writeHWM writes this process's own peak RSS (VmHWM, bytes) to the file
// KTSTR_CHILD_HWM names, if any. The rusage a parent reads after wait is
// no measure of a child it forked: the kernel folds the parent's own
// high-water mark, shared until exec, into it.
func writeHWM() {
	p := os.Getenv("KTSTR_CHILD_HWM")
	if p == "" {
		return
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmHWM:" {
			if kib, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				_ = os.WriteFile(p, []byte(strconv.FormatInt(kib<<10, 10)), 0o644)
			}
		}
	}
}

// measureHWM arranges for the child cmd to report its own peak RSS and
// returns the function that reads it after cmd has run (falling back to
// the rusage maximum where the child wrote none).
func measureHWM(tb testing.TB, cmd *exec.Cmd) func() int64 {
	p := filepath.Join(tb.TempDir(), "hwm")
	cmd.Env = append(cmd.Env, "KTSTR_CHILD_HWM="+p)
	return func() int64 {
		if b, err := os.ReadFile(p); err == nil {
			if v, err := strconv.ParseInt(string(b), 10, 64); err == nil {
				return v
			}
		}
		return cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
	}
}
