package kernel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SchedExtSourcePackage is the Debian package whose kernel source a
// sched_ext build compiles.
const SchedExtSourcePackage = "linux-source-6.12"

const (
	// buildRecipe names the build steps; change it when they change in a
	// way the recorded inputs do not capture, so old builds are not reused.
	buildRecipe = "sched-ext/1"
	// baseConfig is the make target the fragment is merged over.
	baseConfig = "tinyconfig"
	// defaultLLVMVersion is the clang/LLVM major the schedulers are
	// compiled with (tools/sched_ext needs clang ≥ 16).
	defaultLLVMVersion = "16"
	manifestName       = "build.json"
	buildArch          = "x86_64"
)

// schedExtFragment is kernel/config/sched-ext.config: the options merged
// over tinyconfig.
//
//go:embed config/sched-ext.config
var schedExtFragment string

// SchedExtFragment returns the Kconfig fragment a sched_ext build merges
// over tinyconfig.
func SchedExtFragment() string { return schedExtFragment }

// DefaultSchedulers returns the tools/sched_ext schedulers a build makes
// when BuildOptions.Schedulers is empty.
func DefaultSchedulers() []string {
	return []string{"scx_simple", "scx_qmap", "scx_central", "scx_flatcg"}
}

// ErrNotBuilt reports that the cache holds no finished build for the
// current inputs.
var ErrNotBuilt = errors.New("no sched_ext kernel build in the cache for the current inputs; run 'ktstr kernel build --sched-ext'")

// ErrBadOption wraps the errors of BuildOptions values that cannot work.
var ErrBadOption = errors.New("bad build option")

// BuildOptions configures Build and LookupBuild. The zero value builds
// the default schedulers into the default cache with one make job per
// CPU and does not install packages.
type BuildOptions struct {
	// CacheDir is the ktstr cache root; "" means DefaultCacheDir().
	CacheDir string
	// Schedulers names the tools/sched_ext programs to build;
	// empty means DefaultSchedulers().
	Schedulers []string
	// LLVMVersion is the clang/LLVM major version; "" means 16.
	LLVMVersion string
	// Jobs is make's -j; 0 means runtime.NumCPU().
	Jobs int
	// Install lets Build apt-get missing packages when running as root.
	Install bool
	// Force rebuilds even when a finished build with the same inputs exists.
	Force bool
	// Verbose copies every line of the build output to Progress.
	Verbose bool
	// Progress receives status lines; nil discards them.
	Progress io.Writer
}

// DefaultCacheDir returns the ktstr cache root: $XDG_CACHE_HOME/ktstr,
// else ~/.cache/ktstr.
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory (set XDG_CACHE_HOME or HOME): %w", err)
	}
	return filepath.Join(d, "ktstr"), nil
}

func (o BuildOptions) withDefaults() (BuildOptions, error) {
	if o.CacheDir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return o, err
		}
		o.CacheDir = d
	}
	abs, err := filepath.Abs(o.CacheDir)
	if err != nil {
		return o, fmt.Errorf("cache directory %q: %w", o.CacheDir, err)
	}
	o.CacheDir = abs
	if len(o.Schedulers) == 0 {
		o.Schedulers = DefaultSchedulers()
	}
	o.Schedulers = slices.Clone(o.Schedulers)
	slices.Sort(o.Schedulers)
	o.Schedulers = slices.Compact(o.Schedulers)
	for _, s := range o.Schedulers {
		if !schedulerNameRE.MatchString(s) {
			return o, fmt.Errorf("%w: scheduler %q: want a tools/sched_ext program name such as scx_simple", ErrBadOption, s)
		}
	}
	if o.LLVMVersion == "" {
		o.LLVMVersion = defaultLLVMVersion
	}
	if !llvmVersionRE.MatchString(o.LLVMVersion) {
		return o, fmt.Errorf("%w: LLVM version %q: want a major version number such as 16", ErrBadOption, o.LLVMVersion)
	}
	if o.Jobs <= 0 {
		o.Jobs = runtime.NumCPU()
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o, nil
}

var (
	schedulerNameRE = regexp.MustCompile(`^scx_[a-z0-9_]+$`)
	llvmVersionRE   = regexp.MustCompile(`^[0-9]{2,3}$`)
)

// BuildInputs is everything a build's result depends on; its key names
// the build's cache directory.
type BuildInputs struct {
	Recipe         string   `json:"recipe"`
	SourcePackage  string   `json:"source_package"`
	SourceVersion  string   `json:"source_version"`
	BaseConfig     string   `json:"base_config"`
	FragmentSHA256 string   `json:"fragment_sha256"`
	Arch           string   `json:"arch"`
	CC             string   `json:"cc"`
	Clang          string   `json:"clang"`
	Pahole         string   `json:"pahole"`
	Schedulers     []string `json:"schedulers"`
	StaticLink     bool     `json:"static_link"`
}

// Key returns the hex SHA-256 of the inputs' JSON.
func (in BuildInputs) Key() string {
	// A struct of strings, a string slice and a bool always marshals.
	b, _ := json.Marshal(in)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// SchedulerBinary is one built tools/sched_ext program.
type SchedulerBinary struct {
	Name   string `json:"name"`
	Path   string `json:"path"` // relative to the build directory
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Manifest describes a finished build. It is stored as build.json in
// the build's directory; its presence marks the build complete.
type Manifest struct {
	Key                string            `json:"key"`
	Inputs             BuildInputs       `json:"inputs"`
	ConfigSHA256       string            `json:"config_sha256"`
	KernelRelease      string            `json:"kernel_release"`
	Kernel             string            `json:"kernel"` // bzImage, relative to the build directory
	KernelSHA256       string            `json:"kernel_sha256"`
	KernelSize         int64             `json:"kernel_size"`
	Vmlinux            string            `json:"vmlinux"` // relative to the build directory
	Schedulers         []SchedulerBinary `json:"schedulers"`
	KernelBuildSeconds float64           `json:"kernel_build_seconds"`
	SchedsBuildSeconds float64           `json:"schedulers_build_seconds"`
	BuiltAt            time.Time         `json:"built_at"`
	Dir                string            `json:"-"` // the build directory, set when read
}

// KernelPath returns the absolute path of the bzImage.
func (m *Manifest) KernelPath() string { return filepath.Join(m.Dir, m.Kernel) }

// SchedulerPath returns the absolute path of the named scheduler.
func (m *Manifest) SchedulerPath(name string) (string, bool) {
	for _, s := range m.Schedulers {
		if s.Name == name {
			return filepath.Join(m.Dir, s.Path), true
		}
	}
	return "", false
}

// buildDir returns the cache directory of a build with this key.
func buildDir(cacheDir, key string) string {
	return filepath.Join(cacheDir, "kernel-build", "sched-ext-"+key[:16])
}

// readManifest reads dir's build.json and checks that the files it
// names are there with their recorded hashes.
func readManifest(dir string) (*Manifest, error) {
	b, err := readRegular(filepath.Join(dir, manifestName), maxMeta)
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, manifestName), err)
	}
	m.Dir = dir
	if err := m.verify(); err != nil {
		return nil, err
	}
	return &m, nil
}

// verify checks the hashes of the kernel and the schedulers.
func (m *Manifest) verify() error {
	check := func(rel, want string) error {
		if rel == "" || filepath.IsAbs(rel) || strings.HasPrefix(filepath.Clean(rel), "..") {
			return fmt.Errorf("build manifest in %s: bad path %q", m.Dir, rel)
		}
		got, _, err := fileSHA256(filepath.Join(m.Dir, rel))
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("%s: sha256 %s, manifest says %s", filepath.Join(m.Dir, rel), got, want)
		}
		return nil
	}
	if err := check(m.Kernel, m.KernelSHA256); err != nil {
		return err
	}
	for _, s := range m.Schedulers {
		if err := check(s.Path, s.SHA256); err != nil {
			return err
		}
	}
	return nil
}

// writeManifest stores m as dir/build.json, atomically.
func writeManifest(m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode build manifest: %w", err)
	}
	return writeFileAtomic(filepath.Join(m.Dir, manifestName), append(b, '\n'), 0o644)
}

// LookupBuild returns the finished build for the current inputs, or
// ErrNotBuilt. It builds and installs nothing.
func LookupBuild(ctx context.Context, opts BuildOptions) (*Manifest, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	in, err := collectInputs(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrNotBuilt, err)
	}
	key := in.Key()
	m, err := readManifest(buildDir(o.CacheDir, key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ErrNotBuilt
		}
		return nil, fmt.Errorf("%w (%v)", ErrNotBuilt, err)
	}
	if m.Key != key {
		return nil, ErrNotBuilt
	}
	return m, nil
}

// Build builds (or finds in the cache) a sched_ext kernel and the
// tools/sched_ext schedulers, statically linked, and returns the
// build's manifest. Progress goes to opts.Progress; the full output of
// each stage is kept in the build directory (kernel-build.log,
// schedulers-build.log).
func Build(ctx context.Context, opts BuildOptions) (*Manifest, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := ensurePackages(ctx, buildPackages(o.LLVMVersion), o.Install, o.Progress); err != nil {
		return nil, err
	}
	in, err := collectInputs(ctx, o)
	if err != nil {
		return nil, err
	}
	key := in.Key()
	dir := buildDir(o.CacheDir, key)
	if !o.Force {
		m, err := readManifest(dir)
		if err == nil && m.Key == key {
			fmt.Fprintf(o.Progress, "reusing the cached build in %s\n", dir)
			return m, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(o.Progress, "rebuilding: %v\n", err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create build directory: %w", err)
	}
	// A forced or repaired build starts without a manifest, so an
	// interrupted one is never taken for finished.
	if err := os.Remove(filepath.Join(dir, manifestName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("remove old manifest: %w", err)
	}
	fmt.Fprintf(o.Progress, "building %s %s (%s + kernel/config/sched-ext.config) in %s\n",
		in.SourcePackage, in.SourceVersion, in.BaseConfig, dir)

	src, err := unpackSource(ctx, o, in)
	if err != nil {
		return nil, err
	}
	m := &Manifest{Key: key, Inputs: in, Dir: dir}
	if err := buildKernel(ctx, o, src, m); err != nil {
		return nil, err
	}
	if err := buildSchedulers(ctx, o, src, m); err != nil {
		return nil, err
	}
	m.BuiltAt = time.Now().UTC().Truncate(time.Second)
	if err := writeManifest(m); err != nil {
		return nil, err
	}
	return m, nil
}

// collectInputs gathers the source version and the toolchain versions.
func collectInputs(ctx context.Context, o BuildOptions) (BuildInputs, error) {
	ver, err := commandLine(ctx, "dpkg-query", "-W", "-f", "${Version}", SchedExtSourcePackage)
	if err != nil {
		return BuildInputs{}, fmt.Errorf("find the version of %s: %w", SchedExtSourcePackage, err)
	}
	cc, err := commandLine(ctx, "gcc", "--version")
	if err != nil {
		return BuildInputs{}, err
	}
	clang, err := commandLine(ctx, "clang-"+o.LLVMVersion, "--version")
	if err != nil {
		return BuildInputs{}, err
	}
	pahole, err := commandLine(ctx, "pahole", "--version")
	if err != nil {
		return BuildInputs{}, err
	}
	sum := sha256.Sum256([]byte(schedExtFragment))
	return BuildInputs{
		Recipe:         buildRecipe,
		SourcePackage:  SchedExtSourcePackage,
		SourceVersion:  ver,
		BaseConfig:     baseConfig,
		FragmentSHA256: hex.EncodeToString(sum[:]),
		Arch:           buildArch,
		CC:             cc,
		Clang:          clang,
		Pahole:         pahole,
		Schedulers:     o.Schedulers,
		StaticLink:     true,
	}, nil
}

// commandLine runs name with args and returns the first line of its
// output, trimmed.
func commandLine(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return "", fmt.Errorf("run %s %s: %w", name, strings.Join(args, " "), err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return "", fmt.Errorf("%s %s printed nothing", name, strings.Join(args, " "))
	}
	return line, nil
}

// unpackSource unpacks the source package's tarball into the cache once
// per package version and returns the tree's path.
func unpackSource(ctx context.Context, o BuildOptions, in BuildInputs) (string, error) {
	tarball := filepath.Join("/usr/src", in.SourcePackage+".tar.xz")
	root := filepath.Join(o.CacheDir, "kernel-build", "src", in.SourcePackage+"_"+safeName(in.SourceVersion))
	tree := filepath.Join(root, in.SourcePackage)
	if _, err := os.Stat(filepath.Join(tree, "Makefile")); err == nil {
		return tree, nil
	}
	if _, err := os.Stat(tarball); err != nil {
		return "", fmt.Errorf("kernel source tarball: %w; reinstall it with: sudo apt-get install --reinstall %s", err, in.SourcePackage)
	}
	fmt.Fprintf(o.Progress, "unpacking %s into %s\n", tarball, root)
	tmp := root + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", fmt.Errorf("clear %s: %w", tmp, err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", tmp, err)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "tar", "-xJf", tarball, "-C", tmp)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("unpack %s: %w: %s", tarball, err, strings.TrimSpace(lastLines(out.String(), 3)))
	}
	if _, err := os.Stat(filepath.Join(tmp, in.SourcePackage, "Makefile")); err != nil {
		return "", fmt.Errorf("%s does not hold a %s/ tree: %w", tarball, in.SourcePackage, err)
	}
	if err := os.RemoveAll(root); err != nil {
		return "", fmt.Errorf("clear %s: %w", root, err)
	}
	if err := os.Rename(tmp, root); err != nil {
		return "", fmt.Errorf("move the unpacked source into place: %w", err)
	}
	return tree, nil
}

// safeName replaces the characters of s that are awkward in a make path.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '+', r == '_':
			return r
		}
		return '_'
	}, s)
}

// buildKernel configures (tinyconfig + fragment), checks that no
// fragment option was dropped, builds bzImage and copies it into the
// build directory.
func buildKernel(ctx context.Context, o BuildOptions, src string, m *Manifest) error {
	frag, err := parseFragment(schedExtFragment)
	if err != nil {
		return err
	}
	obj := filepath.Join(m.Dir, "obj")
	if err := os.MkdirAll(obj, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", obj, err)
	}
	logPath := filepath.Join(m.Dir, "kernel-build.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("create build log: %w", err)
	}
	defer logf.Close()
	sl := newStageLog("kernel", logf, o.Progress, o.Verbose, time.Now)
	mk := func(args ...string) error {
		base := []string{"-C", src, "ARCH=" + buildArch, "O=" + obj}
		if err := runLogged(ctx, sl, "make", append(base, args...)...); err != nil {
			sl.failure(logPath)
			return fmt.Errorf("kernel build: make %s: %w (full log: %s)", strings.Join(args, " "), err, logPath)
		}
		return nil
	}
	configPath := filepath.Join(obj, ".config")
	if err := mk(baseConfig); err != nil {
		return err
	}
	base, err := os.ReadFile(configPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", configPath, err)
	}
	if err := os.WriteFile(configPath, []byte(mergeConfig(string(base), frag)), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", configPath, err)
	}
	if err := mk("olddefconfig"); err != nil {
		return err
	}
	resolved, err := os.ReadFile(configPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", configPath, err)
	}
	if dropped := droppedSettings(string(resolved), frag); len(dropped) > 0 {
		return fmt.Errorf("kernel config: olddefconfig dropped %s (a dependency is missing; fix kernel/config/sched-ext.config)", strings.Join(dropped, ", "))
	}
	sum := sha256.Sum256(resolved)
	m.ConfigSHA256 = hex.EncodeToString(sum[:])
	fmt.Fprintf(o.Progress, "  kernel: config %s (%d options from the fragment), make -j%d bzImage\n", m.ConfigSHA256[:12], len(frag), o.Jobs)

	start := time.Now()
	if err := mk(fmt.Sprintf("-j%d", o.Jobs), "bzImage"); err != nil {
		return err
	}
	m.KernelBuildSeconds = time.Since(start).Seconds()
	sl.done()

	rel, err := os.ReadFile(filepath.Join(obj, "include", "config", "kernel.release"))
	if err != nil {
		return fmt.Errorf("read kernel.release: %w", err)
	}
	m.KernelRelease = strings.TrimSpace(string(rel))
	m.Kernel = "bzImage"
	m.Vmlinux = filepath.Join("obj", "vmlinux")
	if err := copyFile(filepath.Join(obj, "arch", "x86", "boot", "bzImage"), filepath.Join(m.Dir, m.Kernel), 0o644); err != nil {
		return err
	}
	m.KernelSHA256, m.KernelSize, err = fileSHA256(filepath.Join(m.Dir, m.Kernel))
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Progress, "  kernel: %s, %d bytes, %s\n", m.KernelRelease, m.KernelSize, filepath.Join(m.Dir, m.Kernel))
	return nil
}

// buildSchedulers builds the tools/sched_ext programs against the
// kernel just built (its vmlinux BTF, the tree's libbpf and bpftool),
// linked statically so the guest needs no shared libraries, and copies
// them into the build directory's bin/.
func buildSchedulers(ctx context.Context, o BuildOptions, src string, m *Manifest) error {
	out := filepath.Join(m.Dir, "scx")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	logPath := filepath.Join(m.Dir, "schedulers-build.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("create build log: %w", err)
	}
	defer logf.Close()
	sl := newStageLog("schedulers", logf, o.Progress, o.Verbose, time.Now)
	v := o.LLVMVersion
	args := []string{
		"-C", filepath.Join(src, "tools", "sched_ext"),
		"O=" + out,
		"CLANG=clang-" + v, "LLC=llc-" + v, "LLVM_STRIP=llvm-strip-" + v,
		"VMLINUX_BTF=" + filepath.Join(m.Dir, m.Vmlinux),
		fmt.Sprintf("-j%d", o.Jobs),
	}
	args = append(args, o.Schedulers...)
	fmt.Fprintf(o.Progress, "  schedulers: make %s with clang-%s\n", strings.Join(o.Schedulers, " "), v)
	start := time.Now()
	if err := runLogged(ctx, sl, "make", args...); err != nil {
		sl.failure(logPath)
		return fmt.Errorf("scheduler build: %w (full log: %s)", err, logPath)
	}
	// The Makefile links each scheduler dynamically. Passing
	// LDFLAGS=-static to it would reach libbpf's sub-make, whose shared
	// library cannot link that way, so link the same object and the
	// same static libbpf again, statically: the guest then needs no
	// shared libraries.
	for _, name := range o.Schedulers {
		obj := filepath.Join(out, "build", "obj")
		err := runLogged(ctx, sl, "gcc", "-static", "-o", filepath.Join(out, "build", "bin", name),
			filepath.Join(obj, "sched_ext", name+".o"), filepath.Join(obj, "libbpf", "libbpf.a"),
			"-lelf", "-lz", "-lpthread")
		if err != nil {
			sl.failure(logPath)
			return fmt.Errorf("scheduler build: static link of %s: %w (full log: %s)", name, err, logPath)
		}
	}
	m.SchedsBuildSeconds = time.Since(start).Seconds()
	sl.done()
	bin := filepath.Join(m.Dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", bin, err)
	}
	m.Schedulers = nil
	for _, name := range o.Schedulers {
		built := filepath.Join(out, "build", "bin", name)
		if err := checkStatic(built); err != nil {
			return err
		}
		rel := filepath.Join("bin", name)
		if err := copyFile(built, filepath.Join(m.Dir, rel), 0o755); err != nil {
			return err
		}
		sum, size, err := fileSHA256(filepath.Join(m.Dir, rel))
		if err != nil {
			return err
		}
		m.Schedulers = append(m.Schedulers, SchedulerBinary{Name: name, Path: rel, SHA256: sum, Size: size})
		fmt.Fprintf(o.Progress, "  schedulers: %s, %d bytes, static\n", name, size)
	}
	return nil
}

// checkStatic reports an error unless path is an ELF executable that
// needs no dynamic loader and no shared library.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("scheduler %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("scheduler %s is dynamically linked (has an interpreter); the guest has no shared libraries", path)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("scheduler %s: read dynamic section: %w", path, err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("scheduler %s needs shared libraries %s; the guest has none", path, strings.Join(libs, ", "))
	}
	return nil
}

// runLogged runs name with args, its output going to w. The command
// runs in its own process group, which is killed if ctx ends.
func runLogged(ctx context.Context, w io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = w
	cmd.Stderr = w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: %w", ctx.Err())
		}
		return err
	}
	return nil
}

// fileSHA256 returns the hex SHA-256 and size of a file.
func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// copyFile copies src to dst (replacing it atomically) with mode perm.
func copyFile(src, dst string, perm os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy build output: %w", err)
	}
	return writeFileAtomic(dst, b, perm)
}

// writeFileAtomic writes b to a temporary file beside path and renames
// it over path.
func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
