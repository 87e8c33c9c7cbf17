package kernel

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// Config is a kernel's .config: option name (without CONFIG_) → "y",
// "m" or a value; an option absent or "is not set" reads as "".
type Config map[string]string

// ParseConfig reads a .config file's text.
func ParseConfig(text []byte) Config {
	c := Config{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "CONFIG_") {
			c[strings.TrimPrefix(k, "CONFIG_")] = strings.Trim(v, `"`)
		}
	}
	return c
}

// ReadConfig reads the .config file at path (bounded).
func ReadConfig(path string) (Config, error) {
	b, err := readRegular(path, maxConfig)
	if err != nil {
		return nil, fmt.Errorf("kernel config: %w", err)
	}
	return ParseConfig(b), nil
}

// Tristate names how an option is built: "built in", "module" or
// "missing".
func (c Config) Tristate(opt string) string {
	switch c[opt] {
	case "y":
		return "built in"
	case "m":
		return "module"
	}
	return "missing"
}

// Fact is one thing a run depends on, as a kernel's config says it.
type Fact struct {
	Name  string // what a person calls it
	State string // "built in", "module", "missing", "yes", "no"
}

// Facts lists what a run depends on: the virtio console and virtio-pci
// (built in, module or missing), sched_ext, PREEMPT_RT, devtmpfs and
// cgroups.
func (c Config) Facts() []Fact {
	yes := func(opt string) string {
		if c[opt] == "y" {
			return "yes"
		}
		return "no"
	}
	return []Fact{
		{"virtio console", c.Tristate("VIRTIO_CONSOLE")},
		{"virtio pci", c.Tristate("VIRTIO_PCI")},
		{"sched_ext", yes("SCHED_CLASS_EXT")},
		{"PREEMPT_RT", yes("PREEMPT_RT")},
		{"devtmpfs", yes("DEVTMPFS")},
		{"cgroups", yes("CGROUPS")},
	}
}

// Needs is what a run asks of its kernel.
type Needs struct {
	SchedExt bool // the sched-ext scenario, or a sched_ext scheduler
}

// Preflight checks a kernel whose config is known against what a run
// needs, before anything boots: the virtio console and virtio-pci built
// in or, as modules, present in mods (nil: no module tree); devtmpfs and
// cgroups; sched_ext where the run asks for it. The error names the
// missing option and the fix.
func (c Config) Preflight(n Needs, mods *Modules, kernelName string) error {
	for _, o := range []struct{ opt, module, what string }{
		{"VIRTIO", "virtio", "the virtio core"},
		{"VIRTIO_PCI", "virtio_pci", "virtio-pci, the transport of the bulk port"},
		{"VIRTIO_CONSOLE", "virtio_console", "the virtio console, the bulk port itself"},
	} {
		switch c[o.opt] {
		case "y":
		case "m":
			if mods == nil {
				return fmt.Errorf("%s builds %s as a module (CONFIG_%s=m) and no modules were given: pass the kernel's package (--kernel linux-image-*.deb), its unpacked directory (--kernel DIR holding boot/ and lib/modules/), or --modules DIR", kernelName, o.what, o.opt)
			}
			if !mods.Has(o.module) && !mods.Builtin(o.module) {
				return fmt.Errorf("%s builds %s as a module (CONFIG_%s=m), but %s holds no %s.ko: give the module tree of this kernel's release", kernelName, o.what, o.opt, mods.Dir, o.module)
			}
		default:
			return fmt.Errorf("%s lacks %s (CONFIG_%s is not set): build it with CONFIG_%s=y (or m), or use Debian's cloud kernel (ktstr kernel fetch)", kernelName, o.what, o.opt, o.opt)
		}
	}
	for _, o := range []struct{ opt, why string }{
		{"DEVTMPFS", "the agent finds the bulk port's device node in devtmpfs"},
		{"CGROUPS", "the agent runs its workers in cgroups"},
	} {
		if c[o.opt] != "y" {
			return fmt.Errorf("%s lacks CONFIG_%s (%s): build it with CONFIG_%s=y", kernelName, o.opt, o.why, o.opt)
		}
	}
	if n.SchedExt && c["SCHED_CLASS_EXT"] != "y" {
		return fmt.Errorf("%s has no sched_ext (CONFIG_SCHED_CLASS_EXT is not set); Debian's kernels lack it: run make scx (ktstr kernel build --sched-ext) and use that kernel", kernelName)
	}
	return nil
}
