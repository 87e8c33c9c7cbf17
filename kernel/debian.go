package kernel

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// Debian's kernel packages by release and flavour. The default, 6.12
// cloud, builds virtio-pci and virtio-console in; 6.1's kernels and the
// generic flavours build them as modules, which a run then packs.
const (
	debianPrefix = "linux-image-6.12."
	debianSuffix = "-cloud-amd64-unsigned"
)

// Releases and Flavours are what `ktstr kernel fetch --release
// --flavour` takes.
func Releases() []string { return []string{"6.12", "6.1"} }

// Flavours lists the Debian kernel flavours fetch takes.
func Flavours() []string { return []string{"cloud", "generic", "rt"} }

// debianPattern matches the unsigned linux-image packages of one
// Debian release and flavour: 6.12.N+deb12-cloud-amd64, 6.1.0-N-amd64…
func debianPattern(release, flavour string) (*regexp.Regexp, error) {
	var rel string
	switch release {
	case "6.12":
		rel = `6\.12\.[0-9]+\+deb[0-9]+`
	case "6.1":
		rel = `6\.1\.0-[0-9]+`
	default:
		return nil, fmt.Errorf("release %q: want one of %v", release, Releases())
	}
	fl := ""
	switch flavour {
	case "cloud", "rt":
		fl = "-" + flavour
	case "generic":
	default:
		return nil, fmt.Errorf("flavour %q: want one of %v", flavour, Flavours())
	}
	return regexp.MustCompile(`^linux-image-` + rel + fl + `-amd64-unsigned$`), nil
}

// ErrNoApt reports that the host has no apt-get/apt-cache/dpkg-deb, so
// the Debian kernel cannot be fetched.
var ErrNoApt = errors.New("fetching the default kernel needs Debian's apt-get, apt-cache and dpkg-deb")

// ErrNoPackage reports that apt knows no installable cloud kernel.
var ErrNoPackage = errors.New("apt knows no installable " + debianPrefix + "*" + debianSuffix + " package")

// Largest image and config accepted from a package, and the largest
// JSON record (kernel.json, build.json) read back from the cache.
const (
	maxImage  = 256 << 20
	maxConfig = 16 << 20
	maxMeta   = 1 << 20
)

// packageName is the syntax of a Debian package name (Debian Policy
// 5.6.1): lower-case letters, digits, '+', '-' and '.', starting with a
// letter or digit, two characters at least. The bound on its length is
// ktstr's.
var packageName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]{1,199}$`)

// CheckPackageName refuses a name that is not a Debian package name, so
// that apt-get never takes one for an option ("-o…") or more than one
// package.
func CheckPackageName(name string) error {
	if !packageName.MatchString(name) {
		return fmt.Errorf("package %q is not a Debian package name (lower-case letters, digits, '+', '-' and '.', starting with a letter or digit), such as linux-image-6.12.117+deb12-cloud-amd64-unsigned; 'apt-cache search linux-image' lists them", name)
	}
	return nil
}

// Package is a Debian binary package apt can download.
type Package struct {
	Name    string // e.g. linux-image-6.12.117+deb12-cloud-amd64-unsigned
	Version string // apt's candidate version, e.g. 6.12.117-1~deb12u1
}

// FindDebianPackage asks apt for the newest installable
// linux-image-6.12.*-cloud-amd64-unsigned package.
func FindDebianPackage(ctx context.Context) (Package, error) {
	return FindDebianKernel(ctx, "6.12", "cloud")
}

// FindDebianKernel asks apt for the newest installable unsigned kernel
// package of a Debian release ("6.12", "6.1") and flavour ("cloud",
// "generic", "rt").
func FindDebianKernel(ctx context.Context, release, flavour string) (Package, error) {
	pat, err := debianPattern(release, flavour)
	if err != nil {
		return Package{}, err
	}
	for _, tool := range []string{"apt-cache", "apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return Package{}, fmt.Errorf("%w (%s is missing); pass --kernel PATH to use a bzImage you have", ErrNoApt, tool)
		}
	}
	out, err := command(ctx, "", "apt-cache", "pkgnames", "linux-image-"+release+".")
	if err != nil {
		return Package{}, err
	}
	var names []string
	for _, n := range strings.Fields(string(out)) {
		if pat.MatchString(n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return Package{}, fmt.Errorf("%w (release %s, flavour %s); run: apt-get update", ErrNoPackage, release, flavour)
	}
	out, err = command(ctx, "", "apt-cache", append([]string{"policy"}, names...)...)
	if err != nil {
		return Package{}, err
	}
	p, ok := newestCandidate(parsePolicy(out))
	if !ok {
		return Package{}, fmt.Errorf("%w; run: apt-get update", ErrNoPackage)
	}
	return p, nil
}

// parsePolicy reads `apt-cache policy NAME...` output into the candidate
// version of each package ("(none)" entries are left out).
func parsePolicy(out []byte) map[string]string {
	cands := map[string]string{}
	var cur string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if line != "" && line[0] != ' ' && strings.HasSuffix(line, ":") {
			cur = strings.TrimSuffix(line, ":")
			continue
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate:"); ok && cur != "" {
			if v = strings.TrimSpace(v); v != "" && v != "(none)" {
				cands[cur] = v
			}
		}
	}
	return cands
}

// newestCandidate picks the package with the highest version.
func newestCandidate(cands map[string]string) (Package, bool) {
	var best Package
	for n, v := range cands {
		if best.Name == "" || CompareVersions(v, best.Version) > 0 ||
			(CompareVersions(v, best.Version) == 0 && n > best.Name) {
			best = Package{Name: n, Version: v}
		}
	}
	return best, best.Name != ""
}

// FetchDebian downloads pkg with `apt-get download` and installs its
// /boot/vmlinuz-*, /boot/config-* and module tree into dir. Progress
// from apt goes to log.
func FetchDebian(ctx context.Context, dir string, pkg Package, log io.Writer) (Kernel, error) {
	if err := CheckPackageName(pkg.Name); err != nil {
		return Kernel{}, err
	}
	tmp, err := os.MkdirTemp("", "ktstr-kernel-")
	if err != nil {
		return Kernel{}, fmt.Errorf("fetch kernel: %w", err)
	}
	defer os.RemoveAll(tmp)
	// apt-get drops privileges to _apt for downloads, which cannot write
	// to a private temporary directory; let it.
	_ = os.Chmod(tmp, 0o777)
	cmd := exec.CommandContext(ctx, "apt-get", "download", pkg.Name)
	cmd.Dir = tmp
	cmd.Stdout = log
	var stderr bytes.Buffer
	cmd.Stderr = io.MultiWriter(log, &stderr)
	if err := cmd.Run(); err != nil {
		return Kernel{}, fmt.Errorf("apt-get download %s: %w: %s", pkg.Name, err, lastLine(stderr.Bytes()))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return Kernel{}, fmt.Errorf("apt-get download %s left %d .deb files, want 1", pkg.Name, len(debs))
	}
	unpacked := filepath.Join(tmp, "root")
	if err := UnpackDeb(debs[0], unpacked); err != nil {
		return Kernel{}, err
	}
	src, err := openDir(ctx, unpacked, "")
	if err != nil {
		return Kernel{}, err
	}
	image, err := os.ReadFile(src.Path)
	if err != nil {
		return Kernel{}, err
	}
	var config []byte
	if src.Kernel.Config != "" {
		if config, err = os.ReadFile(src.Kernel.Config); err != nil {
			return Kernel{}, err
		}
	}
	return Install(dir, image, config, Kernel{Origin: "debian:" + pkg.Name, Version: pkg.Version, ModulesDir: src.Kernel.ModulesDir})
}

// scanBoot reads a package's data archive and returns the contents of
// boot/vmlinuz-* and boot/config-*.
func scanBoot(tr *tar.Reader) (image, config []byte, err error) {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return image, config, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		dir, base := path.Split(name)
		if dir != "boot/" {
			continue
		}
		switch {
		case strings.HasPrefix(base, "vmlinuz-"):
			if image, err = readAllLimited(tr, maxImage); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", name, err)
			}
		case strings.HasPrefix(base, "config-"):
			if config, err = readAllLimited(tr, maxConfig); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
}

func command(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, lastLine(stderr.Bytes()))
	}
	return out, nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
