package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/ktstr/ktstr/kernel"
)

// runKernelBuild implements `ktstr kernel build --sched-ext`: build (or
// reuse from the cache) a sched_ext kernel and the tools/sched_ext
// schedulers, then print where they are.
func runKernelBuild(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("kernel build", "--sched-ext", stderr)
	schedExt := fs.Bool("sched-ext", false, "build a kernel with CONFIG_SCHED_CLASS_EXT and the tools/sched_ext schedulers (required)")
	cacheDir := fs.String("cache", "", "ktstr cache root (default $XDG_CACHE_HOME/ktstr or ~/.cache/ktstr)")
	jobs := fs.Int("jobs", runtime.NumCPU(), "parallel make jobs")
	scheds := fs.String("schedulers", strings.Join(kernel.DefaultSchedulers(), ","), "comma-separated tools/sched_ext programs to build")
	llvm := fs.String("llvm", "16", "clang/LLVM major version for the BPF schedulers")
	noInstall := fs.Bool("no-install", false, "do not apt-get missing build packages; fail with the command that installs them")
	force := fs.Bool("force", false, "rebuild even when the cache holds a build with the same inputs")
	cachedOnly := fs.Bool("cached-only", false, "build nothing: print the cached build for the current inputs, or fail (exit 3)")
	verbose := fs.Bool("v", false, "copy every line of make's output to stderr")
	jsonOut := fs.Bool("json", false, "print the build manifest as JSON")
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("kernel build: unexpected argument %q", fs.Arg(0))
	}
	if !*schedExt {
		return usagef("kernel build: only sched_ext kernels are built; run 'ktstr kernel build --sched-ext'")
	}
	if *jobs < 1 {
		return usagef("kernel build: -jobs %d: want at least 1", *jobs)
	}
	var names []string
	for _, s := range strings.Split(*scheds, ",") {
		if s = strings.TrimSpace(s); s != "" {
			names = append(names, s)
		}
	}
	if len(names) == 0 {
		return usagef("kernel build: -schedulers names no scheduler")
	}
	opts := kernel.BuildOptions{
		CacheDir:    *cacheDir,
		Schedulers:  names,
		LLVMVersion: *llvm,
		Jobs:        *jobs,
		Install:     !*noInstall,
		Force:       *force,
		Verbose:     *verbose,
		Progress:    stderr,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var m *kernel.Manifest
	var err error
	if *cachedOnly {
		m, err = kernel.LookupBuild(ctx, opts)
	} else {
		m, err = kernel.Build(ctx, opts)
	}
	if err != nil {
		return kernelBuildErr(err)
	}
	if *jsonOut {
		out := struct {
			Dir string `json:"dir"`
			*kernel.Manifest
		}{m.Dir, m}
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return fmt.Errorf("kernel build: encode manifest: %w", err)
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	fmt.Fprintf(stdout, "kernel %s\n", safe(m.KernelPath()))
	for _, s := range m.Schedulers {
		p, _ := m.SchedulerPath(s.Name)
		fmt.Fprintf(stdout, "%s %s\n", safe(s.Name), safe(p))
	}
	return nil
}

// kernelBuildErr maps a build error to its exit status: bad options are
// usage errors, missing packages or a missing cached build are
// environment errors, a failed build is a failed check.
func kernelBuildErr(err error) error {
	var missing *kernel.MissingPackagesError
	switch {
	case errors.As(err, &missing), errors.Is(err, kernel.ErrNotBuilt):
		return envErr(err)
	case errors.Is(err, kernel.ErrBadOption):
		return usageErr(err)
	}
	return err
}
