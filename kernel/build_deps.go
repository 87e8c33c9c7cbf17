package kernel

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
)

// MissingPackagesError reports Debian packages a build needs that are
// not installed and were not installed for it (not root, or installing
// was turned off).
type MissingPackagesError struct {
	Packages []string
}

// Command returns the command line that installs the missing packages.
func (e *MissingPackagesError) Command() string {
	return "sudo apt-get install -y --no-install-recommends " + strings.Join(e.Packages, " ")
}

func (e *MissingPackagesError) Error() string {
	return fmt.Sprintf("kernel build needs Debian packages that are not installed: %s; install them with: %s",
		strings.Join(e.Packages, " "), e.Command())
}

// buildPackages lists the Debian packages a sched_ext build needs: the
// kernel source, the kernel's build tools, pahole for BTF, and the LLVM
// toolchain plus static libraries for the schedulers.
func buildPackages(llvmVersion string) []string {
	return []string{
		SchedExtSourcePackage,
		"bc", "bison", "flex", "make", "gcc", "libc6-dev", "xz-utils", "zstd",
		"libelf-dev", "libssl-dev", "zlib1g-dev", "dwarves",
		"clang-" + llvmVersion, "llvm-" + llvmVersion,
	}
}

// parseDpkgStatus reads the output of
// `dpkg-query -W -f '${Package} ${db:Status-Abbrev}\n'` and returns the
// packages whose status is installed ("ii").
func parseDpkgStatus(out string) map[string]bool {
	installed := make(map[string]bool)
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[1] == "ii" {
			// Multi-arch packages print as name:arch.
			name, _, _ := strings.Cut(f[0], ":")
			installed[name] = true
		}
	}
	return installed
}

// missingPackages returns the packages of want that dpkg does not list
// as installed, sorted.
func missingPackages(ctx context.Context, want []string) ([]string, error) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		return nil, fmt.Errorf("kernel build needs a Debian system (dpkg-query not found): %w", err)
	}
	args := append([]string{"-W", "-f", "${Package} ${db:Status-Abbrev}\n"}, want...)
	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, "dpkg-query", args...)
	cmd.Stdout = &stdout
	// dpkg-query exits 1 and complains on stderr for packages it has
	// never heard of; those are simply not installed.
	_ = cmd.Run()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	installed := parseDpkgStatus(stdout.String())
	var missing []string
	for _, p := range want {
		if !installed[p] {
			missing = append(missing, p)
		}
	}
	sort.Strings(missing)
	return missing, nil
}

// ensurePackages installs the missing packages of want with apt-get when
// install is set and the process is root; otherwise it returns a
// *MissingPackagesError naming them.
func ensurePackages(ctx context.Context, want []string, install bool, progress io.Writer) error {
	missing, err := missingPackages(ctx, want)
	if err != nil || len(missing) == 0 {
		return err
	}
	if !install || os.Geteuid() != 0 {
		return &MissingPackagesError{Packages: missing}
	}
	fmt.Fprintf(progress, "installing %s\n", strings.Join(missing, " "))
	args := append([]string{"install", "-y", "--no-install-recommends"}, missing...)
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		fmt.Fprint(progress, lastLines(out.String(), 15))
		return fmt.Errorf("apt-get install %s failed (%w); run 'apt-get update' and try again", strings.Join(missing, " "), err)
	}
	still, err := missingPackages(ctx, want)
	if err != nil {
		return err
	}
	if len(still) > 0 {
		return &MissingPackagesError{Packages: still}
	}
	return nil
}

// lastLines returns the last n lines of s, each ending in a newline.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}
