package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// badInputFixtures is the directory of files the bad invocations name.
type badInputFixtures struct {
	dir     string
	good    string // a trace whose replay matches its END record
	raw     string // a raw TX stream
	devices bool   // null, zero and full were made with mknod
}

func (f badInputFixtures) p(name string) string { return filepath.Join(f.dir, name) }

func newBadInputFixtures(t *testing.T) badInputFixtures {
	t.Helper()
	dir := t.TempDir()
	f := badInputFixtures{dir: dir}
	f.good = writeSeedTrace(t, dir, "good.zst", seedNamed(t, "every-row"), false)
	f.raw = f.p("raw.bin")
	write := func(name string, b []byte, perm os.FileMode) {
		require.NoError(t, os.WriteFile(f.p(name), b, perm))
		require.NoError(t, os.Chmod(f.p(name), perm))
	}
	write("raw.bin", seedNamed(t, "every-row").Bytes(), 0o644)
	write("garbage.zst", []byte("not a trace at all"), 0o644)
	write("empty.zst", nil, 0o644)
	write("text.txt", []byte("hello\n"), 0o644)
	write("exists.zst", []byte("recorded earlier"), 0o644)
	write("passwd", []byte(strings.Repeat("root:x:0:0:root:/root:/bin/bash\n", 4)), 0o755)
	write("script.sh", []byte("#!/bin/sh\nexit 0\n"+strings.Repeat("#", 64)+"\n"), 0o755)
	write("elf-good", elfImage(nil), 0o755)
	write("elf-noexec", elfImage(nil), 0o644)
	write("elf-32", elfImage(func(b []byte) { b[4] = 1 }), 0o755)
	write("elf-be", elfImage(func(b []byte) { b[5] = 2 }), 0o755)
	write("elf-arm64", elfImage(func(b []byte) { b[18] = 183 }), 0o755)
	write("elf-core", elfImage(func(b []byte) { b[16] = 4 }), 0o755)
	write("elf-short", []byte("\x7fELF"), 0o755)
	write("elf-so", elfWithDynamic(3, ptDynamic, dtFlags1, 0, dtNull, 0), 0o755)
	write("elf-interp", elfWithDynamic(2, ptInterp), 0o755)
	write("elf-needed", elfWithDynamic(2, ptDynamic, dtNeeded, 1, dtNull, 0), 0o755)
	// Over the 256 MiB bound, sparse: it costs no disk.
	write("elf-huge", elfImage(nil), 0o755)
	require.NoError(t, os.Truncate(f.p("elf-huge"), maxUserExecutable+1))
	require.NoError(t, os.Mkdir(f.p("subdir"), 0o755))
	require.NoError(t, os.Mkdir(f.p("emptydir"), 0o755))
	require.NoError(t, mkfifo(f.p("fifo")))
	require.NoError(t, os.Symlink("missing-target", f.p("dangling")))
	require.NoError(t, os.Symlink("raw.bin", f.p("link-raw")))
	require.NoError(t, os.Link(f.raw, f.p("hardlink-raw")))
	f.devices = mknodDevices(t, dir)
	if f.devices {
		require.NoError(t, os.Symlink("null", f.p("link-null")))
	}
	return f
}

// invocation is one command line and what it must give.
type invocation struct {
	name   string
	args   []string
	code   int
	stderr string // substring of the one stderr line; "" for a control that prints none
	device bool   // names a mknod device node
}

// badInvocations is every wrong command line the CLI must refuse with
// one clear line, by command, with the controls (right command lines
// next to them) that show each refusal is about what is wrong.
func badInvocations(f badInputFixtures) []invocation {
	p := f.p
	good := f.good
	n := 0
	fresh := func() string { n++; return p(fmt.Sprintf("new-%d.zst", n)) }
	var inv []invocation
	add := func(name string, code int, stderr string, args ...string) {
		inv = append(inv, invocation{name: name, args: args, code: code, stderr: stderr})
	}
	dev := func(name string, code int, stderr string, args ...string) {
		inv = append(inv, invocation{name: name, args: args, code: code, stderr: stderr, device: true})
	}

	// The command itself.
	add("no command", 2, "no command given")
	add("unknown command", 2, `unknown command "frobnicate"`, "frobnicate")
	add("command in capitals", 2, `unknown command "Replay"`, "Replay")
	add("a flag for a command", 2, `unknown command "--version"`, "--version")
	add("a lone dash", 2, `unknown command "-"`, "-")

	// replay: flags.
	add("replay: no trace", 2, "no trace given", "replay")
	add("replay: unknown flag", 2, "flag provided but not defined", "replay", "--frob", good)
	add("replay: unknown flag after the trace", 2, "flag provided but not defined", "replay", good, "--frob")
	for _, c := range []string{"halves", "random:", "random:x", "", "bytes:3"} {
		add("replay: --chunking "+c, 2, "--chunking", "replay", "--chunking", c, good)
	}
	add("replay: --mutate -1", 2, "--mutate must be ≥ 0", "replay", "--mutate", "-1", good)
	add("replay: --mutate x", 2, "invalid value", "replay", "--mutate", "x", good)
	add("replay: --seed -1", 2, "invalid value", "replay", "--seed", "-1", good)
	add("replay: --save-failures without --mutate", 2, "needs --mutate", "replay", "--save-failures", p("sf"), good)
	add("replay: --force without --save-failures", 2, "--force applies to --save-failures", "replay", "--force", good)
	for _, v := range []string{"0", "-1", "x", "4XB", "0KiB"} {
		add("replay: --model-limit "+v, 2, "not a positive size", "replay", "--model-limit", v, good)
	}
	add("replay: --save-failures a file", 2, "not a directory", "replay", "--mutate", "8", "--save-failures", p("text.txt"), good)
	add("replay: --save-failures under a file", 2, "not a directory", "replay", "--mutate", "8", "--save-failures", p("text.txt/sub"), good)
	add("replay: --save-failures a FIFO", 2, "a FIFO", "replay", "--mutate", "8", "--save-failures", p("fifo"), good)
	dev("replay: --save-failures a device", 2, "a character device", "replay", "--mutate", "8", "--save-failures", p("null"), good)
	add("replay: --mutate on a pipe", 2, "reads each trace twice", "replay", "--mutate", "8", p("fifo"))
	// replay: inputs.
	add("replay: missing trace", 2, "no such file", "replay", p("missing.zst"))
	add("replay: a directory", 2, "is a directory", "replay", p("subdir"))
	add("replay --json: a directory", 2, "is a directory", "replay", "--json", p("subdir"))
	dev("replay: /dev/null's node", 2, "a character device", "replay", p("null"))
	dev("replay: /dev/zero's node", 2, "a character device", "replay", p("zero"))
	add("replay: garbage", 2, "not zstd-compressed", "replay", p("garbage.zst"))
	add("replay: empty file", 2, "the trace is empty", "replay", p("empty.zst"))
	add("replay: text", 2, "bad trace", "replay", p("text.txt"))
	add("replay: an ELF file", 2, "bad trace", "replay", p("elf-good"))
	add("replay: good, then missing", 2, "no such file", "replay", good, p("missing.zst"))
	add("replay: dangling symlink", 2, "no such file", "replay", p("dangling"))
	add("replay: after --, a dash name", 2, "no such file", "replay", "--", "-x")
	// replay: controls.
	add("replay: good (control)", 0, "", "replay", good)
	add("replay: flags after the trace (control)", 0, "", "replay", good, "--json", "--chunking", "bytes")
	add("replay: --model-limit 1 (control)", 0, "", "replay", "--model-limit", "1", good)
	add("replay: --mutate with --save-failures (control)", 0, "", "replay", "--mutate", "16", "--save-failures", p("sf-ok"), good)

	// trace show and trace stat.
	add("trace: no subcommand", 2, "missing subcommand", "trace")
	add("trace: unknown subcommand", 2, `unknown subcommand "frob"`, "trace", "frob")
	for _, sub := range []string{"show", "stat"} {
		add("trace "+sub+": no trace", 2, "give exactly one trace", "trace", sub)
		add("trace "+sub+": two traces", 2, "give exactly one trace", "trace", sub, good, good)
		add("trace "+sub+": missing", 2, "no such file", "trace", sub, p("missing.zst"))
		add("trace "+sub+": a directory", 2, "is a directory", "trace", sub, p("subdir"))
		dev("trace "+sub+": a device", 2, "a character device", "trace", sub, p("null"))
		add("trace "+sub+": garbage", 2, "not zstd-compressed", "trace", sub, p("garbage.zst"))
		add("trace "+sub+": empty", 2, "the trace is empty", "trace", sub, p("empty.zst"))
		add("trace "+sub+": unknown flag", 2, "flag provided but not defined", "trace", sub, "--frob", good)
		add("trace "+sub+": unknown flag after the trace", 2, "flag provided but not defined", "trace", sub, good, "--frob")
		add("trace "+sub+": good (control)", 0, "", "trace", sub, good)
	}

	// trace import.
	add("import: no --raw", 2, "--raw FILE is required", "trace", "import", "-o", fresh())
	add("import: no -o", 2, "-o OUT.zst is required", "trace", "import", "--raw", f.raw)
	add("import: --chunk -1", 2, "--chunk -1", "trace", "import", "--raw", f.raw, "--chunk", "-1", "-o", fresh())
	add("import: --chunk past a delivery", 2, "--chunk 20000000", "trace", "import", "--raw", f.raw, "--chunk", "20000000", "-o", fresh())
	add("import: --chunk x", 2, "invalid value", "trace", "import", "--raw", f.raw, "--chunk", "x", "-o", fresh())
	add("import: extra argument", 2, "unexpected argument", "trace", "import", "--raw", f.raw, "-o", fresh(), "extra")
	add("import: missing --raw file", 2, "no such file", "trace", "import", "--raw", p("missing.bin"), "-o", fresh())
	add("import: --raw a directory", 2, "is a directory", "trace", "import", "--raw", p("subdir"), "-o", fresh())
	dev("import: --raw /dev/zero's node", 2, "a character device", "trace", "import", "--raw", p("zero"), "--chunk", "4096", "-o", fresh())
	dev("import: --raw /dev/null's node", 2, "a character device", "trace", "import", "--raw", p("null"), "-o", fresh())
	add("import: -o exists", 2, "exists", "trace", "import", "--raw", f.raw, "-o", p("exists.zst"))
	add("import: -o the input", 2, "destroy the input", "trace", "import", "--raw", f.raw, "-o", f.raw, "--force")
	add("import: -o the input without --force", 2, "destroy the input", "trace", "import", "--raw", f.raw, "-o", f.raw)
	add("import: -o a hard link of the input", 2, "destroy the input", "trace", "import", "--raw", f.raw, "-o", p("hardlink-raw"), "--force")
	add("import: -o a symlink to the input", 2, "destroy the input", "trace", "import", "--raw", f.raw, "-o", p("link-raw"), "--force")
	add("import: -o a directory", 2, "a directory", "trace", "import", "--raw", f.raw, "-o", p("subdir"), "--force")
	add("import: -o with a trailing slash", 2, "names a directory", "trace", "import", "--raw", f.raw, "-o", p("newdir")+"/")
	dev("import: -o /dev/null's node", 2, "a character device", "trace", "import", "--raw", f.raw, "-o", p("null"), "--force")
	dev("import: -o /dev/full's node", 2, "a character device", "trace", "import", "--raw", f.raw, "-o", p("full"), "--force")
	dev("import: -o a symlink to a device", 2, "a character device", "trace", "import", "--raw", f.raw, "-o", p("link-null"), "--force")
	add("import: -o a FIFO", 2, "a FIFO", "trace", "import", "--raw", f.raw, "-o", p("fifo"), "--force")
	add("import: -o in a missing directory", 2, "create it first", "trace", "import", "--raw", f.raw, "-o", p("nodir/x.zst"))
	add("import: -o under a file", 2, "not a directory", "trace", "import", "--raw", f.raw, "-o", p("text.txt/x.zst"))
	add("import: -o a dangling symlink", 2, "symbolic link to a missing", "trace", "import", "--raw", f.raw, "-o", p("dangling"), "--force")
	add("import: good (control)", 0, "wrote", "trace", "import", "--raw", f.raw, "-o", fresh())
	add("import: flags after nothing, -o - (control)", 0, "", "trace", "import", "--raw", f.raw, "-o", "-")
	add("import: --force over a file (control)", 0, "wrote", "trace", "import", "--raw", f.raw, "--force", "-o", p("exists-forced.zst"))

	// corpus export.
	add("corpus: no subcommand", 2, "missing subcommand", "corpus")
	add("corpus: unknown subcommand", 2, `unknown subcommand "import"`, "corpus", "import")
	add("corpus export: no -o", 2, "-o DIR is required", "corpus", "export", good)
	add("corpus export: no trace", 2, "no trace given", "corpus", "export", "-o", p("c1"))
	add("corpus export: missing trace", 2, "no such file", "corpus", "export", "-o", p("c1"), p("missing.zst"))
	add("corpus export: a corrupt one among good", 2, "not zstd-compressed", "corpus", "export", "-o", p("c1"), good, p("garbage.zst"))
	add("corpus export: empty trace", 2, "the trace is empty", "corpus", "export", "-o", p("c1"), p("empty.zst"))
	add("corpus export: a directory", 2, "is a directory", "corpus", "export", "-o", p("c1"), p("subdir"))
	add("corpus export: over -max", 2, "raise --max", "corpus", "export", "-o", p("c1"), "-max", "3", good)
	add("replay: --save-failures empty", 2, "name the directory", "replay", "--mutate", "5", "--save-failures", "", good)
	add("trace timeline: -o a directory", 2, "names a file base", "trace", "timeline", good, "-o", p("subdir"))
	add("corpus cover: a directory of no inputs", 2, "holds no trace", "corpus", "cover", p("emptydir"))
	add("corpus export: -max 0", 2, "not a positive size", "corpus", "export", "-o", p("c1"), "-max", "0", good)
	add("corpus export: -max past the bound", 2, "at most 512MiB", "corpus", "export", "-o", p("c1"), "-max", "1GiB", good)
	add("replay: --model-limit past the bound", 2, "at most 512MiB", "replay", "--model-limit", "100GiB", good)
	add("trace minimize: --max past the bound", 2, "at most 512MiB", "trace", "minimize", good, "--until", "sys_rdy", "-o", fresh(), "--max", "2GiB")
	add("corpus export: -max x", 2, "invalid value", "corpus", "export", "-o", p("c1"), "-max", "x", good)
	add("corpus export: unknown flag", 2, "flag provided but not defined", "corpus", "export", "-o", p("c1"), "--bogus", good)
	add("corpus export: -o a file", 2, "not a directory", "corpus", "export", "-o", p("text.txt"), good)
	add("corpus export: -o under a file", 2, "not a directory", "corpus", "export", "-o", p("text.txt/sub"), good)
	add("corpus export: -o a FIFO", 2, "a FIFO", "corpus", "export", "-o", p("fifo"), good)
	dev("corpus export: -o a device", 2, "a character device", "corpus", "export", "-o", p("null"), good)
	add("corpus export: good (control)", 0, "", "corpus", "export", good, "-o", p("c-ok"))

	// kernel: the command lines, not the environment.
	add("kernel: no subcommand", 2, "missing subcommand", "kernel")
	add("kernel: unknown subcommand", 2, `unknown subcommand "frob"`, "kernel", "frob")
	add("kernel fetch: extra argument", 2, "unexpected argument", "kernel", "fetch", "extra")
	add("kernel fetch: unknown release", 2, `--release "5.10"`, "kernel", "fetch", "--release", "5.10")
	add("kernel fetch: unknown flavour", 2, `--flavour "huge"`, "kernel", "fetch", "--flavour", "huge")
	add("kernel list: extra argument", 2, "unexpected argument", "kernel", "list", "extra")
	add("kernel list: unknown flag", 2, "flag provided but not defined", "kernel", "list", "--frob")
	add("kernel path: extra argument", 2, "unexpected argument", "kernel", "path", "extra")
	add("kernel check: extra argument", 2, "unexpected argument", "kernel", "check", "extra")
	add("kernel check: --kernel missing", 2, "no such file", "kernel", "check", "--kernel", p("nothing"))
	add("kernel check: --kernel a text file", 2, "not a kernel", "kernel", "check", "--kernel", p("text.txt"))
	add("kernel check: --kernel a FIFO", 2, "not a regular file", "kernel", "check", "--kernel", p("fifo"))
	dev("kernel check: --kernel a device", 2, "not a regular file", "kernel", "check", "--kernel", p("null"))
	add("kernel check: --kernel a directory without a kernel", 2, "no boot/vmlinuz", "kernel", "check", "--kernel", p(""))
	add("kernel build: no --sched-ext", 2, "--sched-ext", "kernel", "build")
	add("kernel build: --jobs 0", 2, "-jobs 0", "kernel", "build", "--sched-ext", "--jobs", "0")
	add("kernel build: no scheduler", 2, "names no scheduler", "kernel", "build", "--sched-ext", "-schedulers", ",")
	add("kernel build: extra argument", 2, "unexpected argument", "kernel", "build", "--sched-ext", "x")

	// record: flags, each found before anything is probed or read.
	add("record: unknown flag", 2, "flag provided but not defined", "record", "--frob", "-o", fresh())
	add("record: extra argument", 2, "unexpected argument", "record", "-o", fresh(), "extra")
	add("record: no -o", 2, "-o TRACE is required", "record")
	add("record: --backend xen", 2, `--backend "xen"`, "record", "--backend", "xen", "-o", fresh())
	add("record: --accel bad", 2, `--accel "hvf"`, "record", "--accel", "hvf", "-o", fresh())
	add("record: --accel with native", 2, "--accel is QEMU's", "record", "--backend", "native", "--accel", "tcg", "-o", fresh())
	add("record: --force-slow-kvm with qemu", 2, "--force-slow-kvm applies", "record", "--force-slow-kvm", "-o", fresh())
	add("record: --unpack-kernel with qemu", 2, "--unpack-kernel applies", "record", "--unpack-kernel", "-o", fresh())
	for _, c := range []struct{ flag, v, msg string }{
		{"--cpus", "0", "--cpus 0"}, {"--cpus", "65", "--cpus 65"}, {"--cpus", "x", "invalid value"},
		{"--mem", "64", "--mem 64"}, {"--mem", "70000", "--mem 70000"},
		{"--workers", "0", "--workers 0"}, {"--workers", "300", "--workers 300"},
		{"--duration", "0s", "--duration 0s"}, {"--duration", "2h", "--duration 2h"}, {"--duration", "x", "invalid value"},
		{"--scenario", "Bad Name", "not a scenario name"}, {"--scenario", "a\nb", "not a scenario name"},
		{"--timeout", "-1s", "must not be negative"}, {"--watchdog", "-1s", "must not be negative"},
		{"--max-trace", "0", "not a positive size"}, {"--max-trace", "-5", "not a positive size"}, {"--max-trace", "1XB", "not a positive size"},
		{"--max-console", "0", "not a positive size"}, {"--max-console", "127KiB", "--max-console 127KiB: want at least 128KiB"},
	} {
		add("record: "+c.flag+" "+c.v, 2, c.msg, "record", c.flag, c.v, "-o", fresh())
	}
	// More guest memory than the host has is refused before the boot.
	// Control: the default 512 MiB passes this check on every host that
	// runs these tests (and the e2e runs boot with it).
	if host := hostMemMiB(); host > 0 && host < 64<<10 {
		add("record: --mem past the host's", 2, "this host has", "record", "--mem", "65536", "-o", fresh())
	}
	add("record: --kernel missing", 2, "no such file", "record", "--kernel", p("nonexist"), "-o", fresh())
	add("record: --kernel a freestanding ELF with qemu", 2, "only --backend native runs it", "record", "--kernel", p("elf-good"), "-o", fresh())
	// record: outputs, before anything is read or booted.
	add("record: -o exists", 2, "exists; a recorded trace is not overwritten", "record", "-o", p("exists.zst"))
	add("record: -o a directory", 2, "a directory", "record", "--force", "-o", p("subdir"))
	dev("record: -o a device", 2, "a character device", "record", "--force", "-o", p("null"))
	add("record: -o a FIFO", 2, "a FIFO", "record", "--force", "-o", p("fifo"))
	add("record: -o in a missing directory", 2, "create it first", "record", "-o", p("nodir/x.zst"))
	add("record: -o -", 2, "cannot write to standard output", "record", "-o", "-")
	add("record: -o the agent", 2, "destroy the input", "record", "--force", "--agent", p("elf-good"), "-o", p("elf-good"))
	add("record: --console the -o file", 2, "is the -o file", "record", "-o", p("same.zst"), "--console", p("same.zst"))
	dev("record: --console a device", 2, "a character device", "record", "-o", fresh(), "--console", p("null"), "--force")
	add("record: --console a directory", 2, "a directory", "record", "-o", fresh(), "--console", p("subdir"))
	add("record: --console exists", 2, "--force", "record", "-o", fresh(), "--console", p("exists.zst"))
	add("record: --console in a missing directory", 2, "create it first", "record", "-o", fresh(), "--console", p("nodir/console.log"))
	// record: --agent and --scheduler, checked before the host reads or
	// runs them.
	for _, flag := range []string{"--agent", "--scheduler"} {
		for _, c := range []struct{ file, msg string }{
			{"missing", "no such file"}, {"subdir", "is a directory"}, {"fifo", "a FIFO"},
			{"passwd", "not an ELF file"}, {"script.sh", "is a script"}, {"text.txt", "not executable"},
			{"elf-noexec", "not executable"}, {"elf-32", "32-bit"}, {"elf-be", "big-endian"},
			{"elf-arm64", "not x86-64"}, {"elf-core", "type 4"}, {"elf-short", "too short"},
			{"elf-so", "shared library"}, {"elf-interp", "program interpreter"}, {"elf-needed", "needs shared libraries"},
			{"elf-huge", "over the 268435456-byte bound"},
		} {
			add("record: "+flag+" "+c.file, 2, c.msg, "record", flag, p(c.file), "-o", fresh())
		}
		dev("record: "+flag+" /dev/zero's node", 2, "a character device", "record", flag, p("zero"), "-o", fresh())
		add("record: "+flag+" a dynamically linked program", 2, "dynamically linked", "record", flag, os.Args[0], "-o", fresh())
	}
	// record: past every check on its input, the environment is what
	// stops these (no kernel in the empty cache, or no QEMU): exit 3,
	// not 2.
	add("record: a static agent (control)", 3, "ktstr: record: ", "record", "--agent", p("elf-good"), "-o", fresh())
	add("record: a static scheduler (control)", 3, "ktstr: record: ", "record", "--scheduler", p("elf-good"), "-o", fresh())
	add("record: --console a new file (control)", 3, "ktstr: record: ", "record", "--console", p("console-ok.log"), "-o", fresh())
	return inv
}

// TestBadInvocations runs every command line of badInvocations as its
// own process: each refusal is its exit status, one line on stderr
// naming what is wrong, no panic or stack trace, and nothing written
// where it pointed.
func TestBadInvocations(t *testing.T) {
	f := newBadInputFixtures(t)
	invs := badInvocations(f)
	bad := 0
	for _, in := range invs {
		if in.code == ExitUsage {
			bad++
		}
	}
	t.Logf("%d command lines, %d of them bad input", len(invs), bad)
	require.GreaterOrEqual(t, bad, 150, "the issue asks for at least 150 bad invocations")
	if !f.devices {
		t.Log("mknod is not permitted here: the device-node cases skip")
	}
	env := []string{"XDG_CACHE_HOME=" + filepath.Join(f.dir, "empty-cache")}
	for _, in := range invs {
		t.Run(in.name, func(t *testing.T) {
			if in.device && !f.devices {
				t.Skip("mknod is not permitted here")
			}
			r := runChild(t, childOpts{discard: true, env: env}, in.args...)
			assert.Equal(t, in.code, r.code, "exit status; stderr: %q", r.stderr)
			assertNoCrash(t, r.stderr)
			if in.stderr == "" {
				assert.Empty(t, r.stderr)
				return
			}
			assertOneLineError(t, r.stderr)
			assert.Contains(t, r.stderr, in.stderr)
		})
	}
	// What the refusals pointed at is as it was: the device nodes are
	// still devices, the files hold what they held, no temporary file
	// is left, and no refused output was created.
	if f.devices {
		for _, n := range []string{"null", "zero", "full"} {
			fi, err := os.Lstat(f.p(n))
			require.NoError(t, err)
			assert.NotZero(t, fi.Mode()&os.ModeCharDevice, "%s is still a device", n)
		}
	}
	b, err := os.ReadFile(f.p("exists.zst"))
	require.NoError(t, err)
	assert.Equal(t, "recorded earlier", string(b))
	raw, err := os.ReadFile(f.raw)
	require.NoError(t, err)
	assert.Equal(t, seedNamed(t, "every-row").Bytes(), raw, "the import's input is intact")
	for _, name := range []string{"nodir", "newdir", "c1", "same.zst", "sf"} {
		assert.NoFileExists(t, f.p(name))
		assert.NoDirExists(t, f.p(name))
	}
	entries, err := os.ReadDir(f.dir)
	require.NoError(t, err)
	for _, e := range entries {
		assert.NotContains(t, e.Name(), ".tmp-", "temporary file left behind")
	}
	// The controls wrote what they were asked to.
	assert.DirExists(t, f.p("c-ok"))
	assert.FileExists(t, f.p("exists-forced.zst"))
}
