package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"

	"github.com/ktstr/ktstr/kernel"
)

// runKernel dispatches `ktstr kernel SUBCOMMAND`.
func runKernel(args []string, stdout, stderr io.Writer) error {
	const subs = "fetch, list, path, check or build"
	if len(args) == 0 {
		return usagef("kernel: missing subcommand (%s)", subs)
	}
	switch args[0] {
	case "fetch":
		return runKernelFetch(args[1:], stdout, stderr)
	case "list":
		return runKernelList(args[1:], stdout, stderr)
	case "path":
		return runKernelPath(args[1:], stdout, stderr)
	case "check":
		return runKernelCheck(args[1:], stdout, stderr)
	case "build":
		return runKernelBuild(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintf(stderr, "usage: ktstr kernel fetch|list|path|check|build [flags]\n\n"+
			"  fetch  download a Debian kernel (--release 6.12|6.1, --flavour cloud|generic|rt) with its modules into the cache\n"+
			"  list   list cached kernels\n"+
			"  path   print the path of the default (newest) cached kernel\n"+
			"  check  say whether a kernel (--kernel, default the cached one) has what ktstr record needs, from its config\n"+
			"  build  build a sched_ext kernel from source\n")
		return nil
	default:
		return usagef("kernel: unknown subcommand %q (want %s)", args[0], subs)
	}
}

// runKernelFetch implements `ktstr kernel fetch`.
func runKernelFetch(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("kernel fetch", "", stderr)
	pkgName := fs.String("package", "", "Debian package to fetch (default: the newest of --release and --flavour apt knows)")
	release := fs.String("release", "6.12", "Debian kernel release: "+strings.Join(kernel.Releases(), " or "))
	flavour := fs.String("flavour", "cloud", "Debian kernel flavour: "+strings.Join(kernel.Flavours(), ", "))
	force := fs.Bool("force", false, "fetch again even if that release is cached")
	quiet := fs.Bool("q", false, "do not show apt's progress")
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("kernel fetch: unexpected argument %q", fs.Arg(0))
	}
	dir, err := kernel.CacheDir()
	if err != nil {
		return envErr(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	if !slices.Contains(kernel.Releases(), *release) {
		return usagef("kernel fetch: --release %q: want %s", *release, strings.Join(kernel.Releases(), " or "))
	}
	if !slices.Contains(kernel.Flavours(), *flavour) {
		return usagef("kernel fetch: --flavour %q: want %s", *flavour, strings.Join(kernel.Flavours(), ", "))
	}
	pkg := kernel.Package{Name: *pkgName}
	if pkg.Name != "" {
		if err := kernel.CheckPackageName(pkg.Name); err != nil {
			return usageErr(fmt.Errorf("kernel fetch: --package: %w", err))
		}
	}
	if pkg.Name == "" {
		if pkg, err = kernel.FindDebianKernel(ctx, *release, *flavour); err != nil {
			return envErr(fmt.Errorf("kernel fetch: %w", err))
		}
	}
	if !*force {
		rel := strings.TrimSuffix(strings.TrimPrefix(pkg.Name, "linux-image-"), "-unsigned")
		ks, err := kernel.List(dir)
		if err != nil {
			return envErr(err)
		}
		for _, k := range ks {
			if k.Release == rel {
				fmt.Fprintf(stdout, "%s already cached: %s (sha256 %s); --force fetches it again\n", safe(k.Release), safe(k.Path), safe(k.SHA256))
				return nil
			}
		}
	}
	log := stderr
	if *quiet {
		log = io.Discard
	}
	fmt.Fprintf(stderr, "fetching %s %s with apt-get download\n", safe(pkg.Name), safe(pkg.Version))
	k, err := kernel.FetchDebian(ctx, dir, pkg, log)
	if err != nil {
		return envErr(fmt.Errorf("kernel fetch: %w", err))
	}
	fmt.Fprintf(stdout, "%s: %s (sha256 %s)\n", safe(k.Release), safe(k.Path), safe(k.SHA256))
	return nil
}

// runKernelList implements `ktstr kernel list`.
func runKernelList(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("kernel list", "", stderr)
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("kernel list: unexpected argument %q", fs.Arg(0))
	}
	dir, err := kernel.CacheDir()
	if err != nil {
		return envErr(err)
	}
	ks, err := kernel.List(dir)
	if err != nil {
		return envErr(err)
	}
	if len(ks) == 0 {
		fmt.Fprintf(stderr, "no kernels in %s; run: %s\n", safe(dir), kernel.FixFetch)
		return nil
	}
	for i, k := range ks {
		mark := " "
		if i == 0 {
			mark = "*" // the default
		}
		fmt.Fprintf(stdout, "%s %-34s %s  %s  %s\n", mark, safe(k.Release), safe(k.SHA256[:min(12, len(k.SHA256))]), safe(k.Origin), safe(k.Path))
		fmt.Fprintf(stdout, "    %s\n", kernelFacts(k))
	}
	return nil
}

// runKernelPath implements `ktstr kernel path`: the default kernel's
// image, for scripts.
func runKernelPath(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("kernel path", "", stderr)
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("kernel path: unexpected argument %q", fs.Arg(0))
	}
	k, err := defaultKernel()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, safe(k.Path))
	return nil
}

// runKernelCheck implements `ktstr kernel check`: the pre-flight of
// `ktstr record`, on its own. It prints where the kernel's config came
// from (a file beside it, or the image itself with CONFIG_IKCONFIG=y)
// and what a run depends on. Exit 0: the kernel has what the run needs;
// 2: it lacks something, named with the fix; 1: its config is unknown,
// so nothing could be checked.
func runKernelCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("kernel check", "", stderr)
	spec := fs.String("kernel", "", "kernel to check: a bzImage, a linux-image-*.deb or a directory holding boot/ and lib/modules/ (default: the newest cached kernel)")
	modules := fs.String("modules", "", "module tree of a modular --kernel bzImage (lib/modules/RELEASE, or a directory holding it)")
	schedExt := fs.Bool("sched-ext", false, "check for a sched_ext run too (--scenario sched-ext, or a sched_ext --scheduler)")
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("kernel check: unexpected argument %q (give the kernel with --kernel)", fs.Arg(0))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	src, err := openKernel(ctx, "kernel check", *spec, *modules)
	if err != nil && ctx.Err() != nil {
		return &exitError{ExitInterrupted, errors.New("kernel check: interrupted (SIGINT) while unpacking the kernel for its config")}
	}
	if err != nil {
		return err
	}
	// The release and the path come from the user's file: no control
	// character of theirs reaches the terminal.
	fmt.Fprintf(stdout, "kernel %s (sha256 %.12s), %s\n", safeInline(src.Release), src.SHA256, safeInline(src.Path))
	c := src.Config()
	switch {
	case c != nil:
		fmt.Fprintf(stdout, "  config: %s\n", safeInline(src.ConfigFrom))
	case errors.Is(src.ConfigErr, kernel.ErrDamagedImage):
		return usageErr(fmt.Errorf("kernel check: kernel %s: its built-in config cannot be read: %s", safeInline(src.Release), safeInline(src.ConfigErr.Error())))
	case errors.Is(src.ConfigErr, kernel.ErrNoEmbeddedConfig):
		return &exitError{ExitCheck, fmt.Errorf("kernel check: kernel %s: its config is unknown (%v), so nothing was checked; give the kernel with its config (a directory holding boot/vmlinuz-RELEASE and boot/config-RELEASE, or arch/x86/boot/bzImage in its build tree), or build it with CONFIG_IKCONFIG=y", safeInline(src.Release), src.ConfigErr)}
	default:
		return &exitError{ExitCheck, fmt.Errorf("kernel check: kernel %s: its config is unknown, so nothing was checked: %s", safeInline(src.Release), safeInline(src.ConfigErr.Error()))}
	}
	var facts []string
	for _, f := range c.Facts() {
		facts = append(facts, f.Name+": "+f.State)
	}
	if src.Modules != nil {
		facts = append(facts, "modules: "+safeInline(src.Modules.Dir))
	} else {
		facts = append(facts, "modules: none")
	}
	fmt.Fprintf(stdout, "  %s\n", strings.Join(facts, ", "))
	what := "a run"
	if *schedExt {
		what = "a sched_ext run"
	}
	if err := c.Preflight(kernel.Needs{SchedExt: *schedExt}, src.Modules, "kernel "+safeInline(src.Release)); err != nil {
		return usageErr(fmt.Errorf("kernel check: %w", err))
	}
	if _, err := src.Needed(); err != nil {
		return usageErr(fmt.Errorf("kernel check: %w", err))
	}
	fmt.Fprintf(stdout, "  ok: it has what %s needs\n", what)
	return nil
}

// defaultKernel returns the newest cached kernel, or an exit-3 error
// naming `ktstr kernel fetch`.
func defaultKernel() (kernel.Kernel, error) {
	dir, err := kernel.CacheDir()
	if err != nil {
		return kernel.Kernel{}, envErr(err)
	}
	k, err := kernel.Default(dir)
	if err != nil {
		if errors.Is(err, kernel.ErrNoKernel) {
			return kernel.Kernel{}, envErr(err)
		}
		return kernel.Kernel{}, envErr(fmt.Errorf("kernel cache: %w", err))
	}
	return k, nil
}

// kernelFacts says, in one line, what a run depends on in k: from its
// config (the cache's copy, or the one built into the image), and
// whether its module tree is here.
func kernelFacts(k kernel.Kernel) string {
	var parts []string
	if src, err := kernel.CachedConfig(context.Background(), k); err != nil {
		// The error names the entry's path, which any name left in the
		// cache directory makes: escaped, as every path printed is.
		parts = append(parts, "cache entry unreadable ("+safeInline(err.Error())+")")
	} else if c := src.Config(); c == nil {
		parts = append(parts, "config unknown")
	} else {
		if src.ConfigFrom == kernel.EmbeddedConfigFrom {
			parts = append(parts, "config: "+src.ConfigFrom)
		}
		for _, f := range c.Facts() {
			parts = append(parts, f.Name+": "+f.State)
		}
	}
	if k.ModulesDir != "" {
		parts = append(parts, "modules: here")
	} else {
		parts = append(parts, "modules: none")
	}
	return strings.Join(parts, ", ")
}
