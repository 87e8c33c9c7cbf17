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
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/internal/outfile"
	"github.com/ktstr/ktstr/kernel"
	"github.com/ktstr/ktstr/vmm"
)

// runRerun implements `ktstr rerun TRACE`: the configuration the trace
// records (its `ktstr record` command line, with the kernel found by its
// SHA-256 in the cache where the path no longer holds it) recorded again
// to a new trace, and the two compared with trace diff. Exit 0 when they
// agree, 1 when they differ.
//
// A trace is data, possibly someone else's: it never chooses a program
// or file on this host. Its values (scenario, duration, CPUs, ...) are
// taken; the host files it names (--agent, --scheduler, --modules) are
// not, unless the user gives them to rerun, and its kernel only as the
// very image it records by SHA-256.
func runRerun(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rerun", "TRACE", stderr)
	out := fs.String("o", "", "trace to record the rerun to (default: TRACE with .rerun.zst)")
	force := fs.Bool("force", false, "overwrite the -o file if it exists")
	var files rerunFiles
	fs.StringVar(&files.agent, "agent", "", "guest agent to use (a trace that names one needs this: a trace does not choose programs on this host)")
	fs.StringVar(&files.scheduler, "scheduler", "", "scheduler binary to supervise in the guest (needed when the trace names one)")
	fs.StringVar(&files.modules, "modules", "", "module tree for the kernel (needed when the trace names one)")
	fs.StringVar(&files.kernel, "kernel", "", "kernel to boot instead of the image the trace records (found by its SHA-256 otherwise)")
	fs.Var(&files.maxTrace, "max-trace", "trace budget to allow (a trace that raises it past record's default needs this)")
	fs.Var(&files.maxConsole, "max-console", "console log budget to allow (a trace that raises it past record's default needs this)")
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
	recordArgs, err := rerunArgs(meta, files, cacheKernels(cacheDir))
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
	// What runs is shown first, each argument as safe prints it: a
	// trace's strings cannot redraw this line.
	shown := make([]string, len(argv))
	for i, a := range argv {
		shown[i] = safe(a)
	}
	fmt.Fprintf(stderr, "rerun: ktstr %s\n", strings.Join(shown, " "))
	cmd := exec.Command(self, argv...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == ExitUsage || ee.ExitCode() == ExitEnv {
			return &exitError{code: exitCodeOf(err), err: fmt.Errorf("rerun: the recording did not run: %w", err)}
		}
		// The run ran and failed: its trace is compared all the same
		// (trace diff compares how each run ended, too).
	}
	return traceDiff([]string{path, *out}, stdout, stderr)
}

// rerunFiles are the host files the user gives rerun; a trace's own
// are never taken.
type rerunFiles struct {
	agent, scheduler, modules, kernel string
	// maxTrace and maxConsole are the user's budgets for the trace and
	// the console log; a trace may only lower record's defaults, since a
	// guest can fill a budget and with it the disk.
	maxTrace, maxConsole byteSize
}

func exitCodeOf(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		return ee.ExitCode()
	}
	return ExitEnv
}

// cacheKernels maps the SHA-256 of each cached kernel image to its
// cache entry.
func cacheKernels(dir string) map[string]kernel.Kernel {
	m := map[string]kernel.Kernel{}
	if dir == "" {
		return m
	}
	ks, _ := kernel.List(dir)
	for _, k := range ks {
		m[k.SHA256] = k
	}
	return m
}

// rerunArgs turns a trace's recorded command line into the flags that
// record the same configuration again: the output flags are dropped
// (rerun sets its own), the host files the trace names are refused
// unless the user gives them (files), and the kernel is pinned to the
// image the trace was recorded with, found by its SHA-256 in the cache
// when the recorded path no longer holds it.
func rerunArgs(meta capture.Meta, files rerunFiles, cached map[string]kernel.Kernel) ([]string, error) {
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
	// Record takes no argument: a command line with one (or not of
	// ktstr) is not one record ran, and rerunning part of it would be
	// another configuration.
	if cl[0] != "ktstr" || fs.NArg() > 0 {
		return nil, usagef("rerun: the trace's command line (%s) is not one ktstr record ran", describeCmdline(cl))
	}
	drop := map[string]bool{"o": true, "force": true, "q": true, "console": true, "cpuprofile": true, "kernel": true, "agent": true, "scheduler": true, "modules": true, "max-trace": true, "max-console": true}
	var out []string
	fs.Visit(func(f *flag.Flag) {
		if !drop[f.Name] {
			out = append(out, "--"+f.Name+"="+f.Value.String())
		}
	})
	// The host files: the user's, where the trace names one.
	var need []string
	for _, hf := range []struct{ name, traced, given string }{
		{"agent", o.agent, files.agent},
		{"scheduler", o.scheduler, files.scheduler},
		{"modules", o.modules, files.modules},
	} {
		switch {
		case hf.given != "":
			out = append(out, "--"+hf.name+"="+hf.given)
		case hf.traced != "":
			need = append(need, "--"+hf.name+" "+safe(hf.traced))
		}
	}
	for _, b := range []struct {
		name                  string
		traced, given, record byteSize
	}{
		{"max-trace", o.maxTrace, files.maxTrace, vmm.DefaultMaxTrace},
		{"max-console", o.maxConsole, files.maxConsole, vmm.DefaultMaxConsole},
	} {
		switch {
		case b.given > 0:
			out = append(out, "--"+b.name+"="+b.given.String())
		case b.traced > b.record:
			need = append(need, "--"+b.name+" "+b.traced.String())
		case b.traced != b.record:
			out = append(out, "--"+b.name+"="+b.traced.String())
		}
	}
	if len(need) > 0 {
		return nil, usagef("rerun: the trace asks for %s, and a trace does not choose programs or files on this host nor raise its budgets; check them, then give them to rerun yourself (ktstr rerun %s TRACE)", strings.Join(need, ", "), strings.Join(need, " "))
	}
	k := files.kernel
	if k == "" {
		var err error
		if k, err = rerunKernel(meta, o.kernel, cached); err != nil {
			return nil, err
		}
	}
	if k != "" {
		out = append(out, "--kernel="+k)
		// The image alone does not bring the module tree a package or the
		// cache gave the recorded run: the user's cache entry of that
		// image does (a modular kernel's virtio modules).
		if c, ok := cached[meta.KernelSHA256]; ok && files.kernel == "" && files.modules == "" && c.ModulesDir != "" {
			out = append(out, "--modules="+c.ModulesDir)
		}
	}
	return out, nil
}

// rerunKernel finds the image the trace was recorded with: the path it
// was given, while that still holds the image, else the cached kernel of
// the same SHA-256; none of them is exit 3, naming the fix.
func rerunKernel(meta capture.Meta, given string, cached map[string]kernel.Kernel) (string, error) {
	want := meta.KernelSHA256
	switch {
	case want == "" && given == "":
		return "", nil // the default kernel, as recorded: the user's newest cached one
	case want == "":
		// Nothing pins the path to an image: it is only the trace's word.
		return "", usagef("rerun: the trace names the kernel %s but records no SHA-256 of it, so nothing shows it is the image that ran; give rerun --kernel yourself", safe(given))
	case (&dispatch.Digest{}).UnmarshalText([]byte(want)) != nil:
		return "", usagef("rerun: the trace's kernel_sha256 %s is not a SHA-256; give rerun --kernel yourself", safe(want))
	}
	// Only a file that hashes to the recorded image is booted: the
	// trace's --kernel when it is that image, else the image the
	// recorder booted (a package's or directory's, unpacked in the
	// cache). A path the trace names is never taken on its word.
	for _, p := range []string{given, meta.KernelPath} {
		if p != "" && fileSHA256(p) == want {
			return p, nil
		}
	}
	if c, ok := cached[want]; ok {
		return c.Path, nil
	}
	return "", envErr(fmt.Errorf("rerun: the kernel the trace was recorded with (%s, sha256 %.12s) is no longer at %s nor in the cache; fetch it again (ktstr kernel fetch, --release/--flavour as recorded), or give rerun --kernel", safe(meta.KernelRelease), want, orNone(meta.KernelPath)))
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
	return safe(s)
}

func describeCmdline(cl []string) string {
	if len(cl) == 0 {
		return "empty"
	}
	return safe(strings.Join(cl, " "))
}
