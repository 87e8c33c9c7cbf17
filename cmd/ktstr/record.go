package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/internal/outfile"
	"github.com/ktstr/ktstr/kernel"
	"github.com/ktstr/ktstr/vmm"
	"github.com/ktstr/ktstr/vmm/kvm"
	"github.com/ktstr/ktstr/vmm/qemu"
)

// kvmProbeLimit bounds the KVM speed probe: natively its loop takes
// about a millisecond, under KVM's instruction emulator about two seconds.
const kvmProbeLimit = 2 * time.Second

// recordOptions are the flags of `ktstr record`, and the host facts a
// test may replace.
type recordOptions struct {
	backend      string
	accel        string
	kernel       string
	modules      string
	agent        string
	cpus         int
	mem          int
	scenario     string
	duration     time.Duration
	workers      int
	scheduler    string
	timeout      time.Duration
	watchdog     time.Duration
	console      string
	out          string
	quiet        bool
	force        bool
	cmdline      string
	forceSlowKVM bool
	unpackKernel bool
	transport    string
	maxTrace     byteSize
	maxConsole   byteSize
	cpuProfile   string

	// set holds the names of the flags given on the command line.
	set map[string]bool

	// kvmDevice is the KVM device node the native backend opens
	// (kvm.DefaultDevice); tests point it at a path without KVM.
	kvmDevice string
	// probeKVM times a guest loop on a KVM device node (kvm.ProbeDevice);
	// tests replace it to stand for a host whose KVM only emulates.
	probeKVM func(device string, limit time.Duration) (kvm.ProbeResult, error)
	// fakeBackend, if set, is the backend every run uses, whatever
	// --backend says (with no KVM probe): tests stand it for a VMM.
	fakeBackend vmm.Backend
}

var scenarioName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// runRecord implements `ktstr record`.
func runRecord(args []string, stdout, stderr io.Writer) error {
	o := recordOptions{kvmDevice: kvm.DefaultDevice, probeKVM: kvm.ProbeDevice}
	return o.run(args, stdout, stderr)
}

// declare defines record's flags on fs, writing into o; soak uses it
// to check a configuration's flags before any run.
func (o *recordOptions) declare(fs *flag.FlagSet) {
	fs.StringVar(&o.backend, "backend", "auto", "VMM backend: auto (qemu), qemu, or native (our own KVM VMM)")
	fs.StringVar(&o.accel, "accel", "auto", "QEMU accelerator: auto (KVM only where a probe shows native speed), kvm or tcg; --backend qemu only")
	fs.StringVar(&o.kernel, "kernel", "", "bzImage to boot (a build tree's arch/x86/boot/bzImage brings its .config for pre-flight), a linux-image-*.deb or a directory with boot/ and lib/modules/ (default: the newest kernel fetched by 'ktstr kernel fetch'); with --backend native also a freestanding ELF test guest, which runs without the agent")
	fs.StringVar(&o.modules, "modules", "", "module tree of a modular --kernel bzImage (lib/modules/RELEASE, or a directory holding it); a .deb or directory --kernel brings its own")
	fs.StringVar(&o.agent, "agent", "", "prebuilt static guest agent (default: build cmd/ktstr-init from the source tree)")
	fs.IntVar(&o.cpus, "cpus", 2, "guest vCPUs")
	fs.IntVar(&o.mem, "mem", 512, "guest memory in MiB")
	fs.StringVar(&o.scenario, "scenario", "steady", "guest scenario (the agent's 'ktstr-init scenarios' lists them)")
	fs.DurationVar(&o.duration, "duration", 2*time.Second, "how long the scenario's workers run")
	fs.IntVar(&o.workers, "workers", 4, "spinning workers in the guest")
	fs.StringVar(&o.scheduler, "scheduler", "", "scheduler binary to supervise in the guest (its death sends SCDX)")
	fs.DurationVar(&o.timeout, "timeout", 0, "stop the run after this long (default: duration + 3m)")
	fs.DurationVar(&o.watchdog, "watchdog", 0, "run watchdog, re-armed by SCST (default: duration + 2m; 0s with -watchdog=0s disables)")
	fs.StringVar(&o.console, "console", "", "write the guest serial console to FILE (default: a temporary file, shown on failure)")
	fs.StringVar(&o.out, "o", "", "trace file to write (required)")
	fs.BoolVar(&o.quiet, "q", false, "no progress line")
	fs.BoolVar(&o.force, "force", false, "overwrite the -o file if it exists")
	fs.StringVar(&o.cmdline, "cmdline", "", "kernel command line (default: the agent's options, from the flags above); for a freestanding ELF guest, its arguments")
	fs.BoolVar(&o.forceSlowKVM, "force-slow-kvm", false, "--backend native: boot a Linux kernel even where KVM only emulates guest code (hours, not seconds)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the recorder's own CPU profile (pprof) to FILE: where recording costs the host")
	o.maxTrace = vmm.DefaultMaxTrace
	fs.Var(&o.maxTrace, "max-trace", "most TX bytes to record, e.g. 512MiB or 4GiB, and most bytes the trace file may grow by (tiny deliveries cost more file than bytes); a guest writing past either is stopped (END reason trace_budget)")
	o.maxConsole = vmm.DefaultMaxConsole
	fs.Var(&o.maxConsole, "max-console", "most bytes of the guest's serial console the console log keeps, at least 128KiB: its start and its last 64 KiB; what a guest prints past it is dropped, and the log says how much")
	fs.BoolVar(&o.unpackKernel, "unpack-kernel", false, "--backend native: unpack a zstd bzImage on the host and enter the kernel at startup_64, skipping its decompressor")
	fs.StringVar(&o.transport, "transport", kvm.TransportPCI, "--backend native: what the virtio console sits behind: pci (legacy virtio-pci, found by a PCI scan) or mmio (virtio-mmio, announced as virtio_mmio.device= on the kernel command line; Linux needs CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES)")
}

// run parses args into o and records one run. The host facts in o
// (kvmDevice, probeKVM) must be set.
func (o recordOptions) run(args []string, stdout, stderr io.Writer) (err error) {
	fs := newFlagSet("record", "-o TRACE", stderr)
	o.declare(fs)
	if help, err := parseFlags(fs, args); help || err != nil {
		return err
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	if fs.NArg() > 0 {
		return usagef("record: unexpected argument %q", fs.Arg(0))
	}
	if err := o.validate(); err != nil {
		return err
	}

	if o.cpuProfile != "" {
		// Under the output rule, checked with the others in validate.
		pf, err := outfile.Create(o.cpuProfile, outfile.Options{Force: o.force, Inputs: o.inputs(), Flag: "--cpuprofile"})
		if err != nil {
			return usageErr(fmt.Errorf("record: %w", err))
		}
		defer pf.Abort()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return usageErr(fmt.Errorf("record: --cpuprofile: %w", err))
		}
		defer func() {
			pprof.StopCPUProfile()
			if cerr := pf.Commit(); cerr != nil && err == nil {
				err = usageErr(fmt.Errorf("record: --cpuprofile: %w", cerr))
			}
		}()
	}
	// SIGINT and SIGTERM stop the run and keep what it recorded (exit
	// 130 or 143); before the guest starts they stop the preparations.
	intr := catchInterrupts()
	defer intr.stop()
	ctx := intr.ctx

	// What the guest is: a freestanding ELF guest takes none of the
	// agent's flags; the sched-ext defaults name a bzImage where no
	// kernel is given.
	freestanding := o.kernel != "" && isFreestanding(o.kernel)
	if err := o.validateGuest(freestanding); err != nil {
		return err
	}
	// The user's programs, before anything reads or runs them (the
	// sched-ext defaults come from the cache, checked when built).
	if err := o.checkGuestPrograms(); err != nil {
		return err
	}
	if err := o.schedExtDefaults(ctx); err != nil {
		return err
	}

	// Environment: the backend, the kernel, whether KVM is fast enough
	// for it, then the agent.
	backend, probe, err := o.newBackend()
	if err != nil {
		return err
	}
	// QEMU's accelerator is settled by its KVM probe beside the rest of
	// the start-up work (the kernel, the initramfs), not in front of it.
	var accelChosen chan error
	if qb, ok := backend.(*qemu.Backend); ok {
		accelChosen = make(chan error, 1)
		go func() { accelChosen <- qb.ChooseAccel() }()
	}
	k, mods, kconfig, err := o.resolveKernel(ctx, freestanding)
	if err != nil {
		return intr.or(err)
	}
	backendNote := ""
	if probe != nil {
		if backendNote, err = o.checkKVMSpeed(*probe, freestanding); err != nil {
			return err
		}
	}
	work, err := os.MkdirTemp("", "ktstr-rec-")
	if err != nil {
		return envErr(fmt.Errorf("record: %w; set TMPDIR to a writable directory", err))
	}
	defer os.RemoveAll(work)
	// A freestanding ELF test guest (native backend) takes its arguments
	// on the command line and needs neither the agent nor an initramfs.
	initrd := ""
	cmdline := o.cmdline
	scenario := o.scenario
	if freestanding {
		scenario = ""
	} else {
		agent, err := resolveAgent(ctx, o.agent)
		if err != nil {
			return intr.or(err)
		}
		if err := checkScenario(ctx, agent, o.scenario); err != nil {
			return intr.or(err)
		}
		// Built once per agent, scheduler and modules, then reused.
		initrd = filepath.Join(work, "initrd.zst")
		if cache, err := kernel.CacheDir(); err == nil {
			if p, err := vmm.CachedInitramfs(filepath.Join(filepath.Dir(cache), "initramfs"), agent, o.scheduler, mods...); err == nil {
				initrd = p
			}
		}
		if initrd == filepath.Join(work, "initrd.zst") {
			if err := vmm.BuildInitramfs(initrd, agent, o.scheduler, mods...); err != nil {
				return envErr(fmt.Errorf("record: %w", err))
			}
		}
		if cmdline == "" {
			cmdline = vmm.Cmdline(vmm.GuestOptions{Scenario: o.scenario, Duration: o.duration, Workers: o.workers, Scheduler: o.scheduler})
		}
	}
	if intr.signal() != nil {
		return intr.err("before the guest started; nothing was recorded")
	}
	// The outputs, under the output rule (internal/outfile): the trace
	// and the console log are written to temporary files beside their
	// targets and renamed into place when the run is over, interrupted
	// or not. A recorder killed outright (SIGKILL) leaves the trace so
	// far in the temporary file .NAME.tmp-*.
	inputs := o.inputs()
	tf, err := outfile.Create(o.out, outfile.Options{Force: o.force, Inputs: inputs, KeepFailed: true})
	if errors.Is(err, outfile.ErrExists) {
		return usagef("record: %s exists; a recorded trace is not overwritten: choose another -o, or add --force", o.out)
	}
	if err != nil {
		return usageErr(fmt.Errorf("record: %w", err))
	}
	defer tf.Abort()
	// Without --console the log goes to a temporary file of its own,
	// outside the work directory: kept, and named in the summary, when
	// the run fails; removed when it succeeds.
	var cf *outfile.File
	console := ""
	if o.console != "" {
		if cf, err = outfile.Create(o.console, outfile.Options{Force: o.force, Inputs: append(inputs, o.out), Flag: "--console"}); err != nil {
			return usageErr(fmt.Errorf("record: %w", err))
		}
		defer cf.Abort()
		console = cf.Name()
	} else {
		lf, err := os.CreateTemp("", "ktstr-console-*.log")
		if err != nil {
			return envErr(fmt.Errorf("record: %w; set TMPDIR to a writable directory", err))
		}
		lf.Close()
		console = lf.Name()
	}
	f := &checkedWriter{w: tf}

	cfg := vmm.Config{
		Kernel:     k.Path,
		Initrd:     initrd,
		Cmdline:    cmdline,
		CPUs:       o.cpus,
		MemMiB:     o.mem,
		ConsoleLog: console,
		MaxConsole: int64(o.maxConsole),
		WorkDir:    work,
	}
	pr := newProgress(stderr, o.quiet)
	run := &vmm.Run{
		Backend: backend,
		Config:  cfg,
		Trace:   f,
		Meta: capture.Meta{
			ToolVersion:   toolVersion(),
			KernelPath:    k.Path,
			KernelRelease: k.Release,
			KernelSHA256:  k.SHA256,
			CPUs:          o.cpus,
			MemoryMiB:     o.mem,
			Scenario:      scenario,
			CommandLine:   append([]string{"ktstr", "record"}, args...),
			Extra:         map[string]string{"cmdline": cfg.Cmdline},
		},
		Timeout:    o.timeout,
		Watchdog:   o.watchdog,
		MaxTrace:   int64(o.maxTrace),
		ExpectPass: !freestanding && reportsTest(scenario),
		MinStep:    minStep(scenario),
		Progress:   pr.update,
	}
	// Where the guest can fill every host core, the recorder makes room:
	// one Go P, and SCHED_BATCH while the guest runs (docs/design.md).
	defer run.MakeRoom()()
	if accelChosen != nil {
		if err := <-accelChosen; err != nil {
			return usageErr(fmt.Errorf("record: %w", err))
		}
	}
	res, err := run.Execute(ctx)
	pr.done()
	if err != nil {
		// A run that failed leaves no trace behind to block the next
		// attempt (the deferred Aborts), and no console log.
		if cf == nil {
			os.Remove(console)
		}
		if intr.signal() != nil {
			return intr.err("before the guest started; nothing was recorded")
		}
		if f.failed() {
			// What was recorded up to the failed write is not lost: it
			// stays in the temporary file, which replay reads as a
			// truncated trace.
			return usageErr(fmt.Errorf("record: writing the trace %s: %w; the trace up to then is kept as %s (free space and rename it; ktstr replay reads it)", o.out, f.err, tf.Keep()))
		}
		var ee *vmm.EnvError
		if errors.As(err, &ee) {
			return envErr(fmt.Errorf("record: %w", err))
		}
		if errors.Is(err, kvm.ErrNoKVM) {
			return envErr(fmt.Errorf("record: --backend native: %w; or use --backend qemu", err))
		}
		return fmt.Errorf("record: %w", err)
	}
	if err := tf.Commit(); err != nil {
		return usageErr(fmt.Errorf("record: %w", err))
	}
	switch {
	case cf != nil:
		if err := cf.Commit(); err != nil {
			return usageErr(fmt.Errorf("record: the trace %s is written, but the console log is not: %w", o.out, err))
		}
		console = o.console
	case res.ExitStatus == 0 && intr.signal() == nil:
		os.Remove(console)
	}
	printSummary(stderr, o, k, kconfig, backend.Name(), backendNote, res, console)
	if intr.signal() != nil {
		return intr.err("the trace " + o.out + " holds the run up to then")
	}
	if res.ExitStatus != 0 {
		return checkFailed()
	}
	return nil
}

// interrupt turns the first SIGINT or SIGTERM into the cancellation of
// ctx and remembers which it was; a second one ends the process as the
// signal does by default.
type interrupt struct {
	ctx    context.Context
	cancel context.CancelFunc
	ch     chan os.Signal
	done   chan struct{}
	mu     sync.Mutex
	sig    os.Signal
}

// catchInterrupts starts catching SIGINT and SIGTERM.
func catchInterrupts() *interrupt {
	ctx, cancel := context.WithCancel(context.Background())
	in := &interrupt{ctx: ctx, cancel: cancel, ch: make(chan os.Signal, 1), done: make(chan struct{})}
	signal.Notify(in.ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case s := <-in.ch:
			in.mu.Lock()
			in.sig = s
			in.mu.Unlock()
			signal.Stop(in.ch) // the next one is not caught
			cancel()
		case <-in.done:
		}
	}()
	return in
}

// signal returns the signal caught, or nil.
func (in *interrupt) signal() os.Signal {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.sig
}

// stop stops catching signals.
func (in *interrupt) stop() {
	signal.Stop(in.ch)
	close(in.done)
	in.cancel()
}

// err is the error of a run the caught signal ended: exit status 128 +
// the signal's number (130 for SIGINT, 143 for SIGTERM), and what was
// kept.
func (in *interrupt) err(kept string) error {
	s, _ := in.signal().(syscall.Signal)
	return &exitError{128 + int(s), fmt.Errorf("record: interrupted by %s: %s", signalName(s), kept)}
}

// or returns the interruption's error where a signal was caught (the
// error err is then its consequence), else err.
func (in *interrupt) or(err error) error {
	if in.signal() != nil {
		return in.err("before the guest started; nothing was recorded")
	}
	return err
}

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return s.String()
}

// validate checks the flags on their own, before anything is read or
// started, and fills in the defaults that depend on other flags.
func (o *recordOptions) validate() error {
	switch o.backend {
	case "auto", "qemu", "native":
	default:
		return usagef("record: --backend %q: want auto, qemu or native", o.backend)
	}
	if o.backend == "native" && o.set["accel"] {
		return usagef("record: --accel is QEMU's; the native backend always runs on KVM: drop --accel, or use --backend qemu")
	}
	if o.backend != "native" && o.forceSlowKVM {
		return usagef("record: --force-slow-kvm applies to --backend native only")
	}
	if o.backend != "native" && o.unpackKernel {
		return usagef("record: --unpack-kernel applies to --backend native only")
	}
	if o.backend != "native" && o.set["transport"] {
		return usagef("record: --transport applies to --backend native only (QEMU's console is always virtio-serial-pci)")
	}
	if !kvm.KnownTransport(o.transport) {
		return usagef("record: --transport %q: want %s", o.transport, strings.Join(kvm.Transports(), " or "))
	}
	switch o.accel {
	case qemu.AccelAuto, qemu.AccelKVM, qemu.AccelTCG:
	default:
		return usagef("record: --accel %q: want auto, kvm or tcg", o.accel)
	}
	if o.out == "" {
		return usagef("record: -o TRACE is required")
	}
	if err := o.checkOutputs(); err != nil {
		return err
	}
	if o.cpus < 1 || o.cpus > 64 {
		return usagef("record: --cpus %d: want 1 to 64", o.cpus)
	}
	if o.mem < 128 || o.mem > 64<<10 {
		return usagef("record: --mem %d: want 128 to 65536 MiB", o.mem)
	}
	// A guest larger than the host's memory cannot start (QEMU fails to
	// allocate it, or the host swaps): said before the boot, not as a
	// failed run.
	if host := hostMemMiB(); host > 0 && o.mem > host {
		return usagef("record: --mem %d: this host has %d MiB of memory; give at most that", o.mem, host)
	}
	if o.maxConsole < vmm.MinMaxConsole {
		return usagef("record: --max-console %s: want at least 128KiB (the boot's start and the last 64 KiB that say how the run ended)", o.maxConsole.String())
	}
	if o.workers < 1 || o.workers > 256 {
		return usagef("record: --workers %d: want 1 to 256", o.workers)
	}
	if o.duration <= 0 || o.duration > time.Hour {
		return usagef("record: --duration %v: want more than 0 and at most 1h", o.duration)
	}
	if !scenarioName.MatchString(o.scenario) {
		return usagef("record: --scenario %q is not a scenario name", o.scenario)
	}
	if o.timeout < 0 || o.watchdog < 0 {
		return usagef("record: --timeout and --watchdog must not be negative")
	}
	if o.timeout == 0 {
		o.timeout = o.duration + 3*time.Minute
	}
	if o.watchdog == 0 && !o.set["watchdog"] {
		o.watchdog = o.duration + 2*time.Minute
	}
	// A mistyped --kernel path is the user's to fix (exit 2), found
	// before any environment check; what the path holds is judged where
	// the kernel is resolved.
	if o.kernel != "" {
		if _, err := os.Stat(o.kernel); errors.Is(err, os.ErrNotExist) {
			return usagef("record: --kernel %s: no such file or directory; check the path, or omit --kernel to boot the default kernel (%s)", o.kernel, kernel.FixFetch)
		}
	}
	return nil
}

// checkOutputs applies the output rule (internal/outfile) to -o and
// --console before anything is read, built or booted: an existing file
// needs --force, a device, FIFO or directory is refused, and neither may
// be one of the run's inputs or the other output.
func (o *recordOptions) checkOutputs() error {
	inputs := o.inputs()
	if err := outfile.Check(o.out, outfile.Options{Force: o.force, Inputs: inputs}); err != nil {
		if errors.Is(err, outfile.ErrExists) {
			return usagef("record: %s exists; a recorded trace is not overwritten: choose another -o, or add --force", o.out)
		}
		return usageErr(fmt.Errorf("record: %w", err))
	}
	if err := o.checkProfile(); err != nil {
		return err
	}
	if o.console == "" {
		return nil
	}
	if sameTarget(o.console, o.out) {
		return usagef("record: --console %s is the -o file; choose another file for the console log", o.console)
	}
	if err := outfile.Check(o.console, outfile.Options{Force: o.force, Inputs: append(inputs, o.out), Flag: "--console"}); err != nil {
		return usageErr(fmt.Errorf("record: %w", err))
	}
	return nil
}

// checkProfile applies the output rule to --cpuprofile.
func (o *recordOptions) checkProfile() error {
	if o.cpuProfile == "" {
		return nil
	}
	if sameTarget(o.cpuProfile, o.out) || o.console != "" && sameTarget(o.cpuProfile, o.console) {
		return usagef("record: --cpuprofile %s is another output of the run; choose another file", o.cpuProfile)
	}
	if err := outfile.Check(o.cpuProfile, outfile.Options{Force: o.force, Inputs: o.inputs(), Flag: "--cpuprofile"}); err != nil {
		return usageErr(fmt.Errorf("record: %w", err))
	}
	return nil
}

// inputs are the files a run reads, which no output may replace.
func (o *recordOptions) inputs() []string {
	return []string{o.kernel, o.agent, o.scheduler, o.modules}
}

// sameTarget reports whether two output paths name the same file: the
// same path once cleaned and made absolute, or one existing file.
func sameTarget(a, b string) bool {
	aa, erra := filepath.Abs(a)
	ab, errb := filepath.Abs(b)
	if erra == nil && errb == nil && aa == ab {
		return true
	}
	fa, erra := os.Stat(a)
	fb, errb := os.Stat(b)
	return erra == nil && errb == nil && os.SameFile(fa, fb)
}

// checkGuestPrograms checks --agent and --scheduler before the host
// reads them whole or runs them (the agent lists its scenarios on the
// host): each must be a regular, executable file of at most 256 MiB
// holding a static x86-64 ELF executable.
func (o *recordOptions) checkGuestPrograms() error {
	if o.agent != "" {
		if err := checkStaticELF("--agent", o.agent, "build the agent with 'CGO_ENABLED=0 go build -o ktstr-init ./cmd/ktstr-init', or omit --agent to build it from the source tree"); err != nil {
			return fmt.Errorf("record: %w", err)
		}
	}
	if o.scheduler != "" {
		if err := checkStaticELF("--scheduler", o.scheduler, "link the scheduler statically (gcc -static), as 'ktstr kernel build --sched-ext' does"); err != nil {
			return fmt.Errorf("record: %w", err)
		}
	}
	return nil
}

// validateGuest checks the flags against the kind of guest: only the
// native backend enters a freestanding ELF guest, and the agent's flags
// have nothing to configure in one.
func (o *recordOptions) validateGuest(freestanding bool) error {
	if !freestanding {
		return nil
	}
	if o.backend != "native" {
		return usagef("record: --kernel %s is a freestanding ELF guest, not a Linux bzImage: only --backend native runs it", o.kernel)
	}
	// These configure the guest agent (the /init of the initramfs).
	for _, name := range []string{"agent", "scenario", "duration", "workers", "scheduler"} {
		if o.set[name] {
			return usagef("record: --%s configures the guest agent, which the freestanding ELF guest %s runs without: drop it (give the guest's arguments with --cmdline)", name, o.kernel)
		}
	}
	return nil
}

// resolveKernel returns the kernel to boot: the freestanding ELF guest
// or bzImage given with --kernel, or the default kernel; and, for the
// summary, where its config came from (kernel.Source.ConfigFrom).
func (o *recordOptions) resolveKernel(ctx context.Context, freestanding bool) (kernel.Kernel, []vmm.GuestModule, string, error) {
	if freestanding {
		b, err := os.ReadFile(o.kernel)
		if err != nil {
			return kernel.Kernel{}, nil, "", usageErr(fmt.Errorf("record: --kernel: %w", err))
		}
		sum := sha256.Sum256(b)
		abs, err := filepath.Abs(o.kernel)
		if err != nil {
			return kernel.Kernel{}, nil, "", usageErr(fmt.Errorf("record: --kernel: %w", err))
		}
		return kernel.Kernel{Path: abs, Release: "freestanding ELF guest", SHA256: hex.EncodeToString(sum[:]), Origin: "file"}, nil, "", nil
	}
	src, err := openKernel(ctx, "record", o.kernel, o.modules)
	if err != nil {
		return src.Kernel, nil, "", err
	}
	// A damaged image would not boot either: say so now, not after a
	// boot that cannot happen.
	if errors.Is(src.ConfigErr, kernel.ErrDamagedImage) {
		return src.Kernel, nil, "", usageErr(fmt.Errorf("record: kernel %s: %w; give an image that is whole", safeInline(src.Release), src.ConfigErr))
	}
	// Pre-flight, where the config is known: what the run needs, before
	// anything boots.
	if c := src.Config(); c != nil {
		needs := kernel.Needs{SchedExt: o.scenario == "sched-ext"}
		if err := c.Preflight(needs, src.Modules, "kernel "+safeInline(src.Release)); err != nil {
			return src.Kernel, nil, "", usageErr(fmt.Errorf("record: %w; judged by %s", err, src.ConfigFrom))
		}
	}
	mods, err := src.Needed()
	if err != nil {
		return src.Kernel, nil, "", usageErr(fmt.Errorf("record: %w", err))
	}
	out := make([]vmm.GuestModule, len(mods))
	for i, m := range mods {
		out[i] = vmm.GuestModule{Name: m.Name, Data: m.Data}
	}
	return src.Kernel, out, configNote(src), nil
}

// configNote says, for a summary, where src's config came from and what
// that means for the run.
func configNote(src *kernel.Source) string {
	switch {
	case src.Config() != nil:
		return src.ConfigFrom + ", checked before the boot"
	case src.ConfigErr != nil:
		return "unknown (" + src.ConfigErr.Error() + "), so nothing was checked before the boot"
	}
	return "unknown, so nothing was checked before the boot"
}

// openKernel resolves --kernel and --modules for cmd (record, kernel
// check): the bzImage, kernel package or directory given, or else the
// default cached kernel. The Source it returns is never nil. ctx stops
// the reading of a config built into the image.
func openKernel(ctx context.Context, cmd, spec, modules string) (*kernel.Source, error) {
	if spec != "" {
		cache, err := kernel.CacheDir()
		if err != nil {
			return &kernel.Source{}, envErr(fmt.Errorf("%s: %w", cmd, err))
		}
		// A bzImage, a kernel package, or a directory holding one: any
		// way it is wrong is the user's path, exit 2.
		src, err := kernel.Open(ctx, spec, modules, cache)
		if err != nil {
			return &kernel.Source{}, usageErr(fmt.Errorf("%s: %w", cmd, err))
		}
		return src, nil
	}
	k, err := defaultKernel()
	if err != nil {
		return &kernel.Source{Kernel: k}, fmt.Errorf("%s: %w", cmd, err)
	}
	src, err := kernel.FromCache(ctx, k)
	if err != nil {
		return &kernel.Source{Kernel: k}, envErr(fmt.Errorf("%s: the cached kernel %s: %w; run: %s --force", cmd, k.Release, err, kernel.FixFetch))
	}
	if modules != "" {
		if err := src.UseModules(modules); err != nil {
			return src, usageErr(fmt.Errorf("%s: %w", cmd, err))
		}
	}
	return src, nil
}

// reportsTest says whether a built-in scenario reports its verdict in a
// TEST frame (the others end on an SCDX, a crash or a flood).
func reportsTest(scenario string) bool {
	switch scenario {
	case "steady", "snapshot", "hostile", "sched-ext", "throughput":
		return true
	}
	return false
}

// minStep is the step at which a scenario's SCDX is expected: sched-ext
// ejects its scheduler at step 3, and a scheduler dead earlier failed.
func minStep(scenario string) uint16 {
	if scenario == "sched-ext" {
		return 3
	}
	return 0
}

// resolveAgent returns the static guest agent: the one given, or one
// built from the ktstr source tree (found from the working directory or
// next to this executable) into the user cache.
func resolveAgent(ctx context.Context, given string) (string, error) {
	if given != "" {
		if _, err := os.Stat(given); err != nil {
			return "", usagef("record: --agent: %v", err)
		}
		// The file checked is the file run: a bare name is this
		// directory's, never one found in $PATH.
		abs, err := filepath.Abs(given)
		if err != nil {
			return "", usagef("record: --agent %s: %w", given, err)
		}
		return abs, nil
	}
	var root string
	var err error
	for _, start := range searchDirs() {
		if root, err = vmm.FindModuleRoot(start); err == nil {
			break
		}
	}
	if root == "" {
		return "", envErr(fmt.Errorf("record: %w; run ktstr from its source tree, or build the agent with 'CGO_ENABLED=0 go build -o ktstr-init ./cmd/ktstr-init' and pass --agent ktstr-init", vmm.ErrNoAgentSource))
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dst := filepath.Join(cache, "ktstr", "agent", "ktstr-init")
	if err := vmm.BuildAgent(ctx, root, dst); err != nil {
		var ee *vmm.EnvError
		if errors.As(err, &ee) {
			return "", envErr(fmt.Errorf("record: %w", err))
		}
		return "", fmt.Errorf("record: %w", err)
	}
	return dst, nil
}

func searchDirs() []string {
	var dirs []string
	if wd, err := os.Getwd(); err == nil {
		dirs = append(dirs, wd)
	}
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(exe))
	}
	return dirs
}

// hostMemMiB returns the host's memory (MemTotal in /proc/meminfo) in
// MiB, or 0 where it cannot be read.
func hostMemMiB() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kib, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				return 0
			}
			return kib >> 10
		}
	}
	return 0
}

// checkScenario asks the agent which scenarios it has (it runs on the
// host as a helper) and rejects an unknown name before booting.
//
// The agent passed checkStaticELF before it gets here. It gets
// agentListTimeout to answer, and at most agentListMax bytes of its
// output are read.
func checkScenario(ctx context.Context, agent, name string) error {
	ctx, cancel := context.WithTimeout(ctx, agentListTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, agent, "scenarios")
	out := &capWriter{max: agentListMax}
	cmd.Stdout = out
	if err := cmd.Run(); err != nil {
		// An agent too old to list scenarios: let the guest judge.
		return nil
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(out.b.String()), "\n") {
		n, _, _ := strings.Cut(line, "\t")
		if n == name {
			return nil
		}
		if n != "" {
			names = append(names, safe(n))
		}
	}
	if len(names) == 0 {
		return usagef("record: --agent %s lists no scenarios: it is not the ktstr guest agent; build it with 'CGO_ENABLED=0 go build -o ktstr-init ./cmd/ktstr-init', or omit --agent", agent)
	}
	sort.Strings(names)
	return usagef("record: unknown scenario %q (the agent has: %s)", name, strings.Join(names, ", "))
}

// How long and how much the agent may answer `scenarios` on the host.
const (
	agentListTimeout = 10 * time.Second
	agentListMax     = 64 << 10
)

// capWriter keeps the first max bytes written to it and drops the rest.
type capWriter struct {
	b   bytes.Buffer
	max int
}

func (w *capWriter) Write(p []byte) (int, error) {
	if room := w.max - w.b.Len(); room > 0 {
		w.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// progress renders the live progress line on stderr: rewritten in place
// on a terminal, one line per phase change otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	quiet bool
	last  time.Time
	phase string
	line  string
}

func newProgress(w io.Writer, quiet bool) *progress {
	p := &progress{w: w, quiet: quiet}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

func (p *progress) update(s vmm.Progress) {
	if p.quiet {
		return
	}
	line := fmt.Sprintf("[%6.1fs] %s", float64(s.NowNS)/1e9, s.Phase)
	if s.SysRdyNS >= 0 {
		line += fmt.Sprintf(" · SYS_RDY at %d ms", s.SysRdyNS/1e6)
	}
	line += fmt.Sprintf(" · %d frames · %s", s.Frames, byteCount(s.Bytes))
	if s.Rejected > 0 {
		line += fmt.Sprintf(" · %d rejected", s.Rejected)
	}
	if s.Snapshots > 0 {
		line += fmt.Sprintf(" · %d snapshots", s.Snapshots)
	}
	p.line = line
	if p.tty {
		if time.Since(p.last) < 100*time.Millisecond && s.Phase == p.phase {
			return
		}
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	} else if s.Phase != p.phase {
		fmt.Fprintln(p.w, line)
	}
	p.last = time.Now()
	p.phase = s.Phase
}

func (p *progress) done() {
	if p.quiet {
		return
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s\n", p.line)
	}
}

func byteCount(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// printSummary prints what the run did, after the progress line.
// kconfig says where the kernel's config came from (configNote; "" for
// a freestanding guest); backendNote, if not empty, is said of the
// backend (the KVM probe).
func printSummary(w io.Writer, o recordOptions, k kernel.Kernel, kconfig, backend, backendNote string, res vmm.Result, console string) {
	// What the guest, its kernel or its VMM said (the detail, TEST,
	// CRSH, the console) is printed through safeInline and safeLines: no
	// control character of theirs reaches the terminal.
	fmt.Fprintf(w, "recorded %s: %s — %s\n", safe(o.out), res.Reason, safeInline(res.Detail))
	fmt.Fprintf(w, "  kernel %s (sha256 %.12s), %s backend", safeInline(k.Release), k.SHA256, backend)
	if a := res.Info["accel"]; a != "" {
		fmt.Fprintf(w, ", accel %s", safeInline(a))
	}
	if r := res.Info["accel_reason"]; r != "" {
		fmt.Fprintf(w, " (%s)", safeInline(r))
	}
	if backendNote != "" {
		fmt.Fprintf(w, " (%s)", backendNote)
	}
	fmt.Fprintln(w)
	if kconfig != "" {
		fmt.Fprintf(w, "  kernel config: %s\n", safeInline(kconfig))
	}
	if res.SysRdyNS >= 0 {
		fmt.Fprintf(w, "  boot to SYS_RDY %d ms", res.SysRdyNS/1e6)
	} else {
		fmt.Fprintf(w, "  no SYS_RDY")
	}
	fmt.Fprintf(w, ", %d frames, %d bytes, %d verdicts, %d snapshot requests answered, run %.2f s\n",
		res.Stats.Frames, res.Stats.Bytes, len(res.Outcome.Verdicts), res.Snapshots, float64(res.EndNS)/1e9)
	if d := res.Exit.Detail; d != "" {
		// What the VMM had to do beyond the usual (a QEMU killed after
		// the guest's power-off, a console log the disk did not take).
		fmt.Fprintf(w, "  VMM: %s\n", safeInline(d))
	}
	if d := res.Exit.ConsoleDropped; d > 0 {
		fmt.Fprintf(w, "  console log: %d bytes the guest printed past its budget of %s (--max-console) were dropped; the log keeps its start and its last 64 KiB\n", d, o.maxConsole.String())
	}
	if d := res.Outcome.VerdictsDropped; d > 0 {
		fmt.Fprintf(w, "  %d verdicts past the budget of %d kept no entry (verdicts_dropped_sha256 %.12s…)\n", d, dispatch.MaxVerdicts, res.Outcome.VerdictsDroppedSHA256)
	}
	if u := res.Usage; u.PeakRSSKiB > 0 {
		fmt.Fprintf(w, "  recorder: peak RSS %.1f MiB, CPU %.2f s user + %.2f s system\n", float64(u.PeakRSSKiB)/1024, float64(u.UserMS)/1e3, float64(u.SysMS)/1e3)
	}
	if res.SchedExitNS >= 0 {
		fmt.Fprintf(w, "  SCDX at %d ms, guest gone %.1f ms later\n", res.SchedExitNS/1e6, float64(res.GoneNS-res.SchedExitNS)/1e6)
	}
	rj := res.Outcome.Rejected
	var rej []string
	for _, kv := range []struct {
		n string
		v int64
	}{
		{"crc", int64(rj.CRC)}, {"pad", int64(rj.Pad)}, {"unknown_tag", int64(rj.UnknownTag)},
		{"forged_tag", int64(rj.ForgedTag)}, {"shape", int64(rj.Shape)}, {"oneshot_repeat", int64(rj.OneshotRepeat)},
		{"overflow", int64(rj.Overflow)}, {"out_of_order", int64(rj.OutOfOrder)}, {"oversize", rj.Oversize},
		{"resync_bytes", rj.ResyncBytes}, {"truncated_tail_bytes", rj.TruncatedTailBytes},
	} {
		if kv.v != 0 {
			rej = append(rej, fmt.Sprintf("%s=%d", kv.n, kv.v))
		}
	}
	if len(rej) > 0 {
		fmt.Fprintf(w, "  rejected: %s\n", strings.Join(rej, " "))
	}
	if res.GuestExit != nil {
		fmt.Fprintf(w, "  guest EXIT %d\n", *res.GuestExit)
	}
	if res.TestResult != nil {
		t := string(res.TestResult)
		if len(t) > 300 {
			t = t[:300] + "…"
		}
		fmt.Fprintf(w, "  TEST %s\n", safeInline(strings.ToValidUTF8(t, "…")))
	}
	if res.Crash != nil {
		fmt.Fprintf(w, "  guest agent crashed (CRSH):\n%s\n", indent(safeLines(string(res.Crash))))
	}
	if res.ExitStatus != 0 && console != "" {
		if tail := fileTail(console, 15); tail != "" {
			fmt.Fprintf(w, "  last console lines (%s):\n%s\n", safe(console), indent(safeLines(tail)))
		} else {
			fmt.Fprintf(w, "  console log: %s (empty)\n", safe(console))
		}
	}
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// fileTail returns the last n lines of the file at path, reading at most
// its last 64 KiB (a guest can fill its console log without bound).
func fileTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const most = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > most {
		if _, err := f.Seek(fi.Size()-most, io.SeekStart); err != nil {
			return ""
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, most))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(bytes.ToValidUTF8(b, nil)), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// newBackend returns the VMM backend the options ask for, or an
// environment error naming the fix where it cannot run here. For the
// native backend it also returns the KVM speed probe's result.
func (o *recordOptions) newBackend() (vmm.Backend, *kvm.ProbeResult, error) {
	if o.fakeBackend != nil {
		return o.fakeBackend, nil, nil
	}
	if o.backend != "native" {
		qb := &qemu.Backend{Accel: o.accel}
		if err := qb.Available(); err != nil {
			return nil, nil, envErr(fmt.Errorf("record: %w", err))
		}
		return qb, nil, nil
	}
	res, err := o.probeKVM(o.kvmDevice, kvmProbeLimit)
	if errors.Is(err, kvm.ErrNoKVM) {
		return nil, nil, envErr(fmt.Errorf("record: --backend native: %w; or use --backend qemu", err))
	}
	if err != nil {
		return nil, nil, envErr(fmt.Errorf("record: --backend native: KVM on %s failed the speed probe: %w; use --backend qemu", o.kvmDevice, err))
	}
	return &kvm.Backend{Device: o.kvmDevice, UnpackBzImage: o.unpackKernel, Transport: o.transport}, &res, nil
}

// checkKVMSpeed refuses to boot a Linux kernel where the probe found KVM
// only emulating guest code (unless --force-slow-kvm): Linux would take
// hours at emulator speed, and fails on its first AVX instruction. A
// freestanding ELF guest runs fine there. It returns a note on the
// probe for the summary.
func (o *recordOptions) checkKVMSpeed(res kvm.ProbeResult, freestanding bool) (string, error) {
	if res.Native() {
		return "KVM runs guest code natively", nil
	}
	if !freestanding && !o.forceSlowKVM {
		return "", envErr(fmt.Errorf("record: --backend native: KVM on this host only emulates guest code (%v; native needs %.0e per second), "+
			"and a Linux guest cannot boot at emulator speed: use --backend qemu, or a host with hardware virtualisation "+
			"(or add --force-slow-kvm to try anyway)", res, kvm.NativeRate))
	}
	return fmt.Sprintf("KVM only emulates guest code here: %.3g guest instructions per second", res.Rate()), nil
}

// isFreestanding reports whether path is an ELF image that is not a
// Linux kernel (no "Linux version " banner): a freestanding test guest,
// which the native backend enters directly with its arguments on the
// command line, without the agent. Only an ELF file is read whole.
func isFreestanding(path string) bool {
	// Only a regular file of a kernel's size is looked into: a FIFO or a
	// device would block or never end (Open reports what it is).
	if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() || st.Size() > 256<<20 {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || string(magic) != "\x7fELF" {
		return false
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return false
	}
	return !bytes.Contains(b, []byte("Linux version "))
}

// schedExtDefaults fills in what the sched-ext scenario needs and the
// user did not give: the kernel and scx_simple from the cached build of
// `ktstr kernel build --sched-ext` (Debian's kernels have no sched_ext).
func (o *recordOptions) schedExtDefaults(ctx context.Context) error {
	if o.scenario != "sched-ext" || (o.kernel != "" && o.scheduler != "") {
		return nil
	}
	m, err := kernel.LookupBuild(ctx, kernel.BuildOptions{})
	if err != nil {
		return envErr(fmt.Errorf("record: --scenario sched-ext needs a sched_ext kernel and scheduler (or --kernel and --scheduler): %w (or: make scx)", err))
	}
	if o.kernel == "" {
		o.kernel = m.KernelPath()
	}
	if o.scheduler == "" {
		p, ok := m.SchedulerPath("scx_simple")
		if !ok {
			return envErr(fmt.Errorf("record: the cached sched_ext build in %s has no scx_simple; run: ktstr kernel build --sched-ext --force", m.Dir))
		}
		o.scheduler = p
	}
	return nil
}
