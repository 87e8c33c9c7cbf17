package vmm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ktstr/ktstr/vmm/initramfs"
)

// Module is this project's Go module path; AgentPackage the guest
// agent's import path.
const (
	Module       = "github.com/ktstr/ktstr"
	AgentPackage = Module + "/cmd/ktstr-init"
)

// GuestSchedulerPath is where the initramfs holds the scheduler binary
// found at host path on the host: /bin under its own name, because a
// sched_ext scheduler is judged by name (scx_simple registers ops
// "simple") and its output is labelled with it.
func GuestSchedulerPath(host string) string {
	return "/bin/" + filepath.Base(host)
}

// FindModuleRoot returns the directory at or above dir whose go.mod
// declares Module.
func FindModuleRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && modulePath(b) == Module {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod for %s at or above %s", Module, dir)
		}
		d = parent
	}
}

func modulePath(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// BuildAgent builds the guest agent of the module at root into dst as a
// static binary (CGO_ENABLED=0). Go's build cache makes repeated builds
// cheap.
func BuildAgent(ctx context.Context, root, dst string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return &EnvError{Missing: "the Go toolchain (to build the guest agent)", Fix: "apt-get install -y golang-go, or pass --agent PATH", Err: err}
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("build guest agent: %w", err)
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-o", dst, AgentPackage)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build guest agent (go build %s in %s): %w: %s", AgentPackage, root, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// GuestOptions are the scenario options passed on the kernel command
// line (cmd/ktstr-init reads them).
type GuestOptions struct {
	Scenario  string
	Duration  time.Duration // 0: the agent's default
	Workers   int           // 0: the agent's default
	Scheduler string        // host path of the scheduler packed by BuildInitramfs, or ""
}

// Cmdline returns the kernel command line for a live run: the console
// on the first serial port, reboot (which ends the VM) on panic, and the
// agent's options.
func Cmdline(o GuestOptions) string {
	parts := []string{"console=ttyS0", "panic=-1", "quiet", "loglevel=4"}
	if o.Scenario != "" {
		parts = append(parts, "ktstr.scenario="+o.Scenario)
	}
	if o.Duration > 0 {
		parts = append(parts, "ktstr.duration="+o.Duration.String())
	}
	if o.Workers > 0 {
		parts = append(parts, fmt.Sprintf("ktstr.workers=%d", o.Workers))
	}
	if o.Scheduler != "" {
		parts = append(parts, "ktstr.scheduler="+GuestSchedulerPath(o.Scheduler))
	}
	return strings.Join(parts, " ")
}

// GuestModulesDir is where BuildInitramfs packs kernel modules; the
// agent loads what it finds there, in name order, before it looks for
// the bulk port.
const GuestModulesDir = "lib/ktstr/modules"

// GuestModule is a kernel module (decompressed) for the agent to load.
type GuestModule struct {
	Name string // the kernel's name for it, e.g. virtio_console
	Data []byte
}

// BuildInitramfs writes a zstd-compressed initramfs to dst holding the
// agent as /init, if scheduler is not empty that binary at
// GuestSchedulerPath(scheduler), and modules in load order (dependencies
// first) under GuestModulesDir.
func BuildInitramfs(dst, agent, scheduler string, modules ...GuestModule) error {
	files := []initramfs.File{{Name: "init", Src: agent}}
	if scheduler != "" {
		files = append(files, initramfs.File{Name: GuestSchedulerPath(scheduler), Src: scheduler})
	}
	for i, m := range modules {
		files = append(files, initramfs.File{Name: moduleEntry(i, m), Data: m.Data, Perm: 0o644})
	}
	if err := initramfs.Build(dst, initramfs.Zstd, files); err != nil {
		return err
	}
	return nil
}

// moduleEntry is where the i-th module goes in the initramfs: the agent
// loads them in name order.
func moduleEntry(i int, m GuestModule) string {
	return fmt.Sprintf("%s/%02d-%s.ko", GuestModulesDir, i, m.Name)
}

// ErrNoAgentSource reports that the agent can neither be built (no
// module source found) nor was given.
var ErrNoAgentSource = errors.New("cannot find the ktstr source to build the guest agent")

// CachedInitramfs returns an initramfs holding agent, scheduler and
// modules as BuildInitramfs lays them out, from dir when one with the
// same contents was built before (keyed by their SHA-256), else built
// into dir now. Runs with the same agent, scheduler and modules build it
// once. The agent and scheduler are read once (initramfs.ReadHostFile:
// regular files, bounded), and what is hashed is what is packed, so a
// file that changes meanwhile cannot be cached under another content's
// key; only a non-empty regular file at the key's name counts as built.
func CachedInitramfs(dir, agent, scheduler string, modules ...GuestModule) (string, error) {
	h := sha256.New()
	var files []initramfs.File
	for i, p := range []string{agent, scheduler} {
		if p == "" {
			h.Write([]byte{0})
			continue
		}
		data, perm, err := initramfs.ReadHostFile(p)
		if err != nil {
			return "", fmt.Errorf("initramfs: %s: %w", p, err)
		}
		h.Write(data)
		h.Write([]byte(GuestSchedulerPath(p)))
		name := "init"
		if i == 1 {
			name = GuestSchedulerPath(p)
		}
		files = append(files, initramfs.File{Name: name, Data: data, Perm: perm})
	}
	for i, m := range modules {
		h.Write([]byte(m.Name))
		sum := sha256.Sum256(m.Data)
		h.Write(sum[:])
		files = append(files, initramfs.File{Name: moduleEntry(i, m), Data: m.Data, Perm: 0o644})
	}
	path := filepath.Join(dir, hex.EncodeToString(h.Sum(nil))[:24]+".cpio.zst")
	if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("initramfs cache: %w", err)
	}
	// Whatever else sits at the name (a FIFO, a link, an empty file) is
	// replaced: Build renames the new image over it.
	if err := initramfs.Build(path, initramfs.Zstd, files); err != nil {
		return "", err
	}
	return path, nil
}
