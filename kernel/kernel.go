// Package kernel provisions the guest kernels live runs boot: it fetches
// Debian's cloud kernel into the user's cache, reads the release out of
// any bzImage, and keeps a small JSON record (release, sha256, origin)
// next to every cached kernel.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it sits before the first arrow: the kernel it provides runs
// the virtio-console driver that carries the guest's bytes to the host.
//
// Cache layout, under $XDG_CACHE_HOME/ktstr/kernels (default
// ~/.cache/ktstr/kernels):
//
//	<release>/vmlinuz      the bzImage
//	<release>/config       the kernel's .config, where known
//	<release>/kernel.json  Kernel, as JSON
//
// Kernels built from source (sched_ext) are installed the same way with
// Install, so record finds them by release.
package kernel

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Kernel describes one bootable kernel image.
type Kernel struct {
	Path    string `json:"path"`             // the bzImage
	Release string `json:"release"`          // as `uname -r` prints it in the guest
	SHA256  string `json:"sha256"`           // lower-case hex of the image
	Config  string `json:"config,omitempty"` // the kernel's .config file, where known
	// ModulesDir is the kernel's module tree (lib/modules/RELEASE),
	// where known: a modular kernel's virtio modules come from it.
	ModulesDir string    `json:"modules,omitempty"`
	Origin     string    `json:"origin,omitempty"`  // where it came from: a Debian package, a source tree
	Version    string    `json:"version,omitempty"` // package version, where it came from a package
	Added      time.Time `json:"added"`             // when it entered the cache
}

// ErrNoKernel reports that the cache holds no kernel.
var ErrNoKernel = errors.New("no kernel in the cache")

// FixFetch is the command that fills an empty cache.
const FixFetch = "ktstr kernel fetch"

// CacheDir returns the kernel cache directory:
// $XDG_CACHE_HOME/ktstr/kernels, or ~/.cache/ktstr/kernels.
func CacheDir() (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find the kernel cache: set XDG_CACHE_HOME or HOME: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "ktstr", "kernels"), nil
}

// Setup-header offsets of a bzImage (Documentation/arch/x86/boot.rst).
const (
	offBootFlag      = 0x1fe // u16 0xAA55
	offHeaderMagic   = 0x202 // "HdrS"
	offKernelVersion = 0x20e // u16 pointer to the version string, minus 0x200
	setupBase        = 0x200
)

// Release reads the kernel release out of a bzImage's setup header
// ("6.12.117+deb12-cloud-amd64" from the version string
// "6.12.117+deb12-cloud-amd64 (debian-kernel@…) #1 SMP …").
func Release(image []byte) (string, error) {
	if len(image) < 0x264 ||
		binary.LittleEndian.Uint16(image[offBootFlag:]) != 0xaa55 ||
		string(image[offHeaderMagic:offHeaderMagic+4]) != "HdrS" {
		return "", errors.New("not a bzImage: no x86 boot header (boot flag 0xAA55 and \"HdrS\")")
	}
	p := int(binary.LittleEndian.Uint16(image[offKernelVersion:]))
	if p == 0 {
		return "", errors.New("bzImage has no kernel version string")
	}
	p += setupBase
	if p >= len(image) {
		return "", fmt.Errorf("bzImage version string offset %#x lies past the end of the image", p)
	}
	s := image[p:min(len(image), p+256)]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	rel, _, _ := strings.Cut(string(s), " ")
	if rel == "" {
		return "", errors.New("bzImage has an empty kernel version string")
	}
	return rel, nil
}

// Inspect describes the bzImage at path, for `--kernel PATH`.
func Inspect(path string) (Kernel, error) {
	k, _, err := inspectImage(path)
	return k, err
}

// inspectImage is Inspect, also returning the image it read, so that
// what else is read from it comes from the bytes its SHA-256 names.
func inspectImage(path string) (Kernel, []byte, error) {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return Kernel{}, nil, fmt.Errorf("read kernel: %w", err)
	case !st.Mode().IsRegular():
		return Kernel{}, nil, fmt.Errorf("%s is not a regular file", path)
	case st.Size() > maxImage:
		return Kernel{}, nil, fmt.Errorf("%s is %d bytes, over the %d-byte bound of a kernel image", path, st.Size(), maxImage)
	}
	b, err := readImage(path)
	if err != nil {
		return Kernel{}, nil, err
	}
	rel, err := Release(b)
	if err != nil {
		return Kernel{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	sum := sha256.Sum256(b)
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return Kernel{Path: abs, Release: rel, SHA256: hex.EncodeToString(sum[:]), Origin: "file"}, b, nil
}

// readImage reads the kernel image at path, bounded by maxImage.
func readImage(path string) ([]byte, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, fmt.Errorf("read kernel: %w", err)
	}
	defer f.Close()
	b, err := readAllLimited(f, maxImage)
	if err != nil {
		return nil, fmt.Errorf("read kernel %s: %w", path, err)
	}
	return b, nil
}

// Install copies the bzImage image (and config, if non-nil) into dir as
// the cache entry for its release, and writes its kernel.json. k supplies
// Origin and Version; Path, Release, SHA256, Config and Added are filled in.
func Install(dir string, image []byte, config []byte, k Kernel) (Kernel, error) {
	rel, err := Release(image)
	if err != nil {
		return Kernel{}, err
	}
	if strings.ContainsAny(rel, "/\x00") || rel == "." || rel == ".." {
		return Kernel{}, fmt.Errorf("kernel release %q cannot name a cache directory", rel)
	}
	sum := sha256.Sum256(image)
	k.Release = rel
	k.SHA256 = hex.EncodeToString(sum[:])
	k.Added = time.Now().UTC().Truncate(time.Second)
	ent := filepath.Join(dir, rel)
	if err := os.MkdirAll(ent, 0o755); err != nil {
		return Kernel{}, fmt.Errorf("create kernel cache entry: %w", err)
	}
	// What is replaced below (vmlinuz, config, kernel.json, modules/) is
	// replaced only inside the cache: an entry that is a link to a
	// directory elsewhere, left by someone else, is not written through.
	if st, err := os.Lstat(ent); err != nil || !st.IsDir() {
		return Kernel{}, fmt.Errorf("kernel cache entry %s is not a directory of its own (a symbolic link?); nothing was written through it: remove it (rm %s) and fetch again", ent, ent)
	}
	k.Path = filepath.Join(ent, "vmlinuz")
	if err := writeAtomic(k.Path, image); err != nil {
		return Kernel{}, err
	}
	if k.ModulesDir != "" {
		// The module tree moves in whole, next to the image, replacing
		// an older copy.
		dst := filepath.Join(ent, "modules")
		_ = os.RemoveAll(dst)
		if err := os.Rename(k.ModulesDir, dst); err != nil {
			if err := copyTree(k.ModulesDir, dst); err != nil {
				return Kernel{}, fmt.Errorf("install the module tree: %w", err)
			}
		}
		k.ModulesDir = dst
	}
	k.Config = ""
	if config != nil {
		k.Config = filepath.Join(ent, "config")
		if err := writeAtomic(k.Config, config); err != nil {
			return Kernel{}, err
		}
	}
	meta, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return Kernel{}, fmt.Errorf("encode kernel.json: %w", err)
	}
	if err := writeAtomic(filepath.Join(ent, "kernel.json"), append(meta, '\n')); err != nil {
		return Kernel{}, err
	}
	return k, nil
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	return nil
}

// List returns the kernels cached in dir, newest release first. Entries
// whose kernel.json is missing or unreadable, or whose image is gone,
// are skipped.
func List(dir string) ([]Kernel, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read kernel cache: %w", err)
	}
	var ks []Kernel
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		// Bounded, and only a regular file: a FIFO or a link to
		// /dev/zero left in the cache must not hang or fill memory.
		b, err := readRegular(filepath.Join(dir, e.Name(), "kernel.json"), maxMeta)
		if err != nil {
			continue
		}
		var k Kernel
		if json.Unmarshal(b, &k) != nil || k.Release == "" {
			continue
		}
		// The entry's own directory is authoritative, so a moved cache
		// still works.
		k.Path = filepath.Join(dir, e.Name(), "vmlinuz")
		if _, err := os.Stat(k.Path); err != nil {
			continue
		}
		if k.Config != "" {
			k.Config = filepath.Join(dir, e.Name(), "config")
		}
		if k.ModulesDir != "" {
			k.ModulesDir = filepath.Join(dir, e.Name(), "modules")
		}
		ks = append(ks, k)
	}
	sort.SliceStable(ks, func(i, j int) bool { return CompareVersions(ks[i].Release, ks[j].Release) > 0 })
	return ks, nil
}

// Default returns the newest cached kernel, or an error wrapping
// ErrNoKernel that names the command fixing it.
func Default(dir string) (Kernel, error) {
	ks, err := List(dir)
	if err != nil {
		return Kernel{}, err
	}
	if len(ks) == 0 {
		return Kernel{}, fmt.Errorf("%w %s; run: %s (or pass --kernel PATH)", ErrNoKernel, dir, FixFetch)
	}
	return ks[0], nil
}

// CompareVersions orders version-like strings by comparing runs of
// digits numerically and everything else byte-wise: "6.12.9" < "6.12.10".
// It returns -1, 0 or +1.
func CompareVersions(a, b string) int {
	for a != "" && b != "" {
		da, db := isDigit(a[0]), isDigit(b[0])
		switch {
		case da && db:
			na, ra := digits(a)
			nb, rb := digits(b)
			na, nb = strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
			if len(na) != len(nb) {
				return cmp(len(na), len(nb))
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = ra, rb
		case a[0] != b[0]:
			return cmp(int(a[0]), int(b[0]))
		default:
			a, b = a[1:], b[1:]
		}
	}
	return cmp(len(a), len(b))
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func digits(s string) (string, string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

func cmp(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// errOverBound is readAllLimited's error for more than its limit.
var errOverBound = errors.New("larger than the bound")

// readAllLimited reads r up to limit bytes, failing beyond it with an
// error wrapping errOverBound.
func readAllLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w of %d bytes", errOverBound, limit)
	}
	return b, nil
}

// copyTree copies the regular files and directories under src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(out, 0o755)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(out, b, 0o644)
		}
		return nil
	})
}
