package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/internal/outfile"
	"github.com/ktstr/ktstr/kernel"
)

// runRerun implements `ktstr rerun TRACE`: the configuration the trace
// records (its `ktstr record` command line, with the kernel found by its
// SHA-256 in the cache where the path no longer holds it) recorded again
// to a new trace, and the two compared with trace diff. Exit 0 when they
// agree, 1 when they differ.
func runRerun(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rerun", "TRACE", stderr)
	out := fs.String("o", "", "trace to record the rerun to (default: TRACE with .rerun.zst)")
	force := fs.Bool("force", false, "overwrite the -o file if it exists")
	agent := fs.String("agent", "", "guest agent to use instead of the one the trace's command line names")
	pos, help, err := parseInterspersed(fs, args)
	if help || err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("rerun: give exactly one trace")
	}
	path := pos[0]
	if *out == "" {
		*out = strings.TrimSuffix(path, ".zst") + ".rerun.zst"
	}
	if err := outfile.Check(*out, outfile.Options{Force: *force, Inputs: []string{path}}); err != nil {
		return usagef("rerun: %w", err)
	}
	f, err := openTrace(path)
	if err != nil {
		return fmt.Errorf("rerun: %w", err)
	}
	r, err := capture.NewReader(f)
	f.Close()
	if err != nil {
		return usagef("rerun: %s: %w", path, err)
	}
	meta := r.Meta()
	cacheDir, _ := kernel.CacheDir()
	recordArgs, err := rerunArgs(meta, *agent, cacheKernels(cacheDir))
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return envErr(fmt.Errorf("rerun: cannot find the ktstr executable: %w", err))
	}
	argv := append(append([]string{"record"}, recordArgs...), "-q", "-o", *out)
	if *force {
		argv = append(argv, "--force")
	}
	fmt.Fprintf(stderr, "rerun: ktstr %s\n", strings.Join(argv, " "))
	cmd := exec.Command(self, argv...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == ExitUsage || ee.ExitCode() == ExitEnv {
			return &exitError{code: exitCodeOf(err), err: fmt.Errorf("rerun: the recording did not run: %w", err)}
		}
		// The run ran and failed: its trace is compared all the same.
	}
	return traceDiff([]string{path, *out}, stdout, stderr)
}

func exitCodeOf(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		return ee.ExitCode()
	}
	return ExitEnv
}

// cacheKernels maps the SHA-256 of each cached kernel image to its path.
func cacheKernels(dir string) map[string]string {
	m := map[string]string{}
	if dir == "" {
		return m
	}
	ks, _ := kernel.List(dir)
	for _, k := range ks {
		m[k.SHA256] = k.Path
	}
	return m
}

// rerunArgs turns a trace's recorded command line into the flags that
// record the same configuration again: the output flags are dropped
// (rerun sets its own), the agent replaced when one is given, and the
// kernel pinned to the image the trace was recorded with, found by its
// SHA-256 in the cache when the recorded path no longer holds it.
func rerunArgs(meta capture.Meta, agent string, cached map[string]string) ([]string, error) {
	cl := meta.CommandLine
	if len(cl) < 2 || cl[1] != "record" {
		return nil, usagef("rerun: the trace records no `ktstr record` command line (it was %s); only recorded runs can be rerun", describeCmdline(cl))
	}
	var o recordOptions
	fs := flag.NewFlagSet("record", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.declare(fs)
	if err := fs.Parse(cl[2:]); err != nil {
		return nil, usagef("rerun: the trace's command line does not parse: %w", err)
	}
	drop := map[string]bool{"o": true, "force": true, "q": true, "console": true, "cpuprofile": true, "kernel": true, "agent": true}
	var out []string
	fs.Visit(func(f *flag.Flag) {
		if !drop[f.Name] {
			out = append(out, "--"+f.Name+"="+f.Value.String())
		}
	})
	if agent != "" {
		out = append(out, "--agent="+agent)
	} else if o.agent != "" {
		out = append(out, "--agent="+o.agent)
	}
	k, err := rerunKernel(meta, o.kernel, cached)
	if err != nil {
		return nil, err
	}
	if k != "" {
		out = append(out, "--kernel="+k)
	}
	return out, nil
}

// rerunKernel finds the image the trace was recorded with: the path it
// was given, while that still holds the image, else the cached kernel of
// the same SHA-256; none of them is exit 3, naming the fix.
func rerunKernel(meta capture.Meta, given string, cached map[string]string) (string, error) {
	want := meta.KernelSHA256
	if want == "" {
		return given, nil // nothing to pin: as recorded
	}
	for _, p := range []string{given, meta.KernelPath} {
		if p != "" && fileSHA256(p) == want {
			if p == meta.KernelPath && given != "" && given != p {
				return given, nil // a package or directory: it unpacks to that image again
			}
			return p, nil
		}
	}
	if p, ok := cached[want]; ok {
		return p, nil
	}
	return "", envErr(fmt.Errorf("rerun: the kernel the trace was recorded with (%s, sha256 %.12s) is no longer at %s nor in the cache; fetch it again (ktstr kernel fetch, --release/--flavour as recorded) or give its package", meta.KernelRelease, want, orNone(meta.KernelPath)))
}

func fileSHA256(p string) string {
	st, err := os.Stat(p)
	if err != nil || !st.Mode().IsRegular() || st.Size() > 256<<20 {
		return ""
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func orNone(s string) string {
	if s == "" {
		return "no recorded path"
	}
	return s
}

func describeCmdline(cl []string) string {
	if len(cl) == 0 {
		return "empty"
	}
	return safe(strings.Join(cl, " "))
}
