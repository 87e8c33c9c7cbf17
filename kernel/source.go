package kernel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// ErrNotKernel reports a --kernel argument that is no kernel: not a
// bzImage, a kernel package or a directory holding one.
var ErrNotKernel = errors.New("not a kernel")

// Source is a kernel ready for a run: its image, and where known its
// config and module tree.
type Source struct {
	Kernel
	Modules *Modules // nil when no module tree is known
	// ConfigFrom says, for people, where the config came from: a file's
	// path, or EmbeddedConfigFrom; "" when it is unknown.
	ConfigFrom string
	// ConfigErr says why the config is unknown: ErrNoEmbeddedConfig
	// (none beside the image and none in it), an error wrapping
	// ErrDamagedImage, or another reason (an LZO kernel, a bound).
	ConfigErr error
	config    Config // nil when the config is unknown
}

// EmbeddedConfigFrom is Source.ConfigFrom for a config read out of the
// image itself (EmbeddedConfig).
const EmbeddedConfigFrom = "the config built into the image (CONFIG_IKCONFIG=y)"

// Config returns the kernel's config, or nil when it is unknown.
func (s *Source) Config() Config { return s.config }

// useFile takes the config from the .config file at path.
func (s *Source) useFile(path string) error {
	c, err := ReadConfig(path)
	if err != nil {
		return err
	}
	s.Kernel.Config, s.config, s.ConfigFrom, s.ConfigErr = path, c, path, nil
	return nil
}

// useEmbedded takes the config built into image, if it has one; if not,
// ConfigErr says why. A kernel whose config cannot be read is not
// refused here: it is then not checked before it boots. cacheDir, if
// not "", remembers the answer (embeddedConfigCached).
func (s *Source) useEmbedded(ctx context.Context, image []byte, cacheDir string) error {
	b, err := embeddedConfigCached(ctx, image, s.SHA256, cacheDir)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		s.ConfigErr = err
		return nil
	}
	s.config, s.ConfigFrom, s.ConfigErr = ParseConfig(b), EmbeddedConfigFrom, nil
	return nil
}

// Open resolves what a user gave as --kernel (and --modules): a bzImage
// file; a Debian kernel package (linux-image-*.deb), unpacked into
// cacheDir/debs the first time; or a directory holding boot/vmlinuz-*
// and lib/modules/RELEASE/ (an unpacked package, or / of an installed
// system). modulesDir, if not "", is the module tree to use (a
// lib/modules/RELEASE directory, or a directory holding one).
//
// Where the config comes from: a package's boot/config-RELEASE; for a
// bzImage, the config built into it (CONFIG_IKCONFIG=y), which is that
// image's own, or else its build tree's .config (buildTreeConfig).
// Reading the built-in config unpacks the kernel, which ctx can stop.
func Open(ctx context.Context, spec, modulesDir, cacheDir string) (*Source, error) {
	st, err := os.Stat(spec)
	if err != nil {
		return nil, fmt.Errorf("--kernel %s: %w", spec, err)
	}
	var s *Source
	switch {
	case st.IsDir():
		s, err = openDir(ctx, spec, cacheDir)
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("--kernel %s: %w: not a regular file or directory", spec, ErrNotKernel)
	case st.Size() > 2<<30:
		return nil, fmt.Errorf("--kernel %s: %w: %d bytes is too large for a kernel or its package", spec, ErrNotKernel, st.Size())
	case IsDeb(spec):
		s, err = openDeb(ctx, spec, cacheDir)
	default:
		if st.Size() > maxImage {
			return nil, fmt.Errorf("--kernel %s: %w: %d bytes, over the %d-byte bound of a bzImage", spec, ErrNotKernel, st.Size(), maxImage)
		}
		k, image, ierr := inspectImage(spec)
		if ierr != nil {
			if isELF(spec) {
				// A build tree's vmlinux: the bzImage is beside it.
				return nil, fmt.Errorf("--kernel %s: %w: it is an ELF file, such as a build tree's vmlinux; give the tree's arch/x86/boot/bzImage", spec, ErrNotKernel)
			}
			return nil, fmt.Errorf("--kernel: %w: %w", ErrNotKernel, ierr)
		}
		s = &Source{Kernel: k}
		if err = s.useEmbedded(ctx, image, cacheDir); err != nil {
			return nil, err
		}
		// The tree's .config stands in where the image has no config of
		// its own, not where the image is damaged.
		if tree := buildTreeConfig(spec, k.Release); s.config == nil && tree != "" && !errors.Is(s.ConfigErr, ErrDamagedImage) {
			if err := s.useFile(tree); err != nil {
				s.ConfigErr = err
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if modulesDir != "" {
		if err := s.UseModules(modulesDir); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// UseModules makes dir the kernel's module tree (--modules DIR):
// lib/modules/RELEASE itself, or a directory holding RELEASE/ or
// lib/modules/RELEASE/.
func (s *Source) UseModules(dir string) error {
	m, err := openModulesArg(dir, s.Release)
	if err != nil {
		return fmt.Errorf("--modules %s: %w", dir, err)
	}
	s.Modules = m
	return nil
}

// CachedConfig is FromCache without the module tree, for what only
// needs the config (ktstr kernel list).
func CachedConfig(ctx context.Context, k Kernel) (*Source, error) {
	s := &Source{Kernel: k}
	if k.Config != "" {
		if err := s.useFile(k.Config); err != nil {
			return nil, err
		}
		return s, nil
	}
	image, err := readImage(k.Path)
	if err != nil {
		return nil, err
	}
	// The entry is CACHE/RELEASE/vmlinuz.
	if err := s.useEmbedded(ctx, image, filepath.Dir(filepath.Dir(k.Path))); err != nil {
		return nil, err
	}
	return s, nil
}

// FromCache returns a cached kernel as a Source, with the config and
// module tree stored beside it; an entry without a config file gets the
// config built into its image, if it has one.
func FromCache(ctx context.Context, k Kernel) (*Source, error) {
	s, err := CachedConfig(ctx, k)
	if err != nil {
		return nil, err
	}
	if k.ModulesDir != "" {
		m, err := OpenModules(k.ModulesDir, k.Release)
		if err != nil {
			return nil, err
		}
		s.Modules = m
	}
	return s, nil
}

// openModulesArg opens --modules DIR: lib/modules/RELEASE itself, or a
// directory holding RELEASE/ or lib/modules/RELEASE/.
func openModulesArg(dir, release string) (*Modules, error) {
	for _, d := range []string{filepath.Join(dir, "lib", "modules", release), filepath.Join(dir, release)} {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return OpenModules(d, release)
		}
	}
	return OpenModules(dir, release)
}

// openDir finds the kernel in a directory laid out as a package or a
// system: boot/vmlinuz-RELEASE, boot/config-RELEASE and
// lib/modules/RELEASE (or usr/lib/modules/RELEASE).
func openDir(ctx context.Context, dir, cacheDir string) (*Source, error) {
	images, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(images) == 0 {
		return nil, fmt.Errorf("--kernel %s: %w: the directory holds no boot/vmlinuz-* (give a bzImage, a linux-image-*.deb, or a directory with boot/ and lib/modules/)", dir, ErrNotKernel)
	}
	// The newest release, as an installed system boots by default.
	sort.Slice(images, func(i, j int) bool { return CompareVersions(images[i], images[j]) > 0 })
	k, image, err := inspectImage(images[0])
	if err != nil {
		return nil, fmt.Errorf("--kernel %s: %w: %w", dir, ErrNotKernel, err)
	}
	s := &Source{Kernel: k}
	suffix := strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	if c := filepath.Join(dir, "boot", "config-"+suffix); fileExists(c) {
		if err := s.useFile(c); err != nil {
			return nil, err
		}
	} else if err := s.useEmbedded(ctx, image, cacheDir); err != nil {
		return nil, err
	}
	for _, m := range []string{filepath.Join(dir, "lib", "modules", k.Release), filepath.Join(dir, "usr", "lib", "modules", k.Release)} {
		if st, err := os.Stat(m); err == nil && st.IsDir() {
			s.Kernel.ModulesDir = m
			if s.Modules, err = OpenModules(m, k.Release); err != nil {
				return nil, err
			}
			break
		}
	}
	return s, nil
}

// openDeb unpacks a kernel package into cacheDir/debs/SHA (once) and
// opens that directory.
func openDeb(ctx context.Context, deb, cacheDir string) (*Source, error) {
	sum, err := fileSum(deb, maxPackage)
	if err != nil {
		return nil, fmt.Errorf("--kernel %s: %w", deb, err)
	}
	dst := filepath.Join(cacheDir, "debs", sum[:16])
	if !fileExists(filepath.Join(dst, ".complete")) {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, fmt.Errorf("unpack %s: %w", deb, err)
		}
		tmp, err := os.MkdirTemp(filepath.Dir(dst), ".unpack-*")
		if err != nil {
			return nil, fmt.Errorf("unpack %s: %w", deb, err)
		}
		defer os.RemoveAll(tmp)
		if err := unpackSummed(deb, tmp, sum); err != nil {
			return nil, fmt.Errorf("--kernel %w", err)
		}
		if err := os.WriteFile(filepath.Join(tmp, ".complete"), []byte(deb+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("unpack %s: %w", deb, err)
		}
		_ = os.RemoveAll(dst)
		if err := os.Rename(tmp, dst); err != nil {
			return nil, fmt.Errorf("unpack %s: %w", deb, err)
		}
	}
	s, err := openDir(ctx, dst, cacheDir)
	if err != nil {
		return nil, err
	}
	s.Kernel.Origin = "deb:" + filepath.Base(deb)
	return s, nil
}

// maxPackage bounds a kernel package read (Debian's are under 120 MiB).
const maxPackage = 2 << 30

// fileSum returns the hex SHA-256 of the file at p, failing past limit
// bytes (a file still growing is not read without end).
func fileSum(p string, limit int64) (string, error) {
	f, err := openRegular(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, limit+1))
	if err != nil {
		return "", err
	}
	if n > limit {
		return "", fmt.Errorf("%s is over the %d-byte bound of a kernel package", p, int64(limit))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// unpackSummed unpacks the package deb into dst, as UnpackDeb does, and
// checks that what it read hashes to sum, the SHA-256 the unpacked copy
// is kept under: a package that changed since it was hashed (a download
// or copy still going) would otherwise be kept under another file's name.
func unpackSummed(deb, dst, sum string) error {
	f, err := openRegular(deb)
	if err != nil {
		return fmt.Errorf("open %s: %w", deb, err)
	}
	defer f.Close()
	h := sha256.New()
	if err := unpackDebFrom(io.TeeReader(f, h), deb, dst, defaultDebLimits()); err != nil {
		return err
	}
	// The rest of the file, past the data archive, is hashed too.
	if _, err := io.Copy(h, io.LimitReader(f, maxPackage)); err != nil {
		return fmt.Errorf("read %s: %w", deb, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("%s changed while it was read (sha256 %.12s, then %.12s): a download or copy still going? Give it again once it is complete", deb, sum, got)
	}
	return nil
}

// buildTreeConfig returns the .config of the kernel build tree that
// image lies in (TREE/arch/x86/boot/bzImage, as `make` leaves it), or ""
// when image is not in one, when the tree's include/config/kernel.release
// is not the image's release, or when the .config is newer than the
// image (make menuconfig since the build, which leaves kernel.release
// alone): a .config changed since the last build must not pre-flight
// the image built before it.
func buildTreeConfig(image, release string) string {
	boot := filepath.Dir(image)
	arch := filepath.Dir(filepath.Dir(boot))
	if filepath.Base(boot) != "boot" || filepath.Base(filepath.Dir(boot)) != "x86" || filepath.Base(arch) != "arch" {
		return ""
	}
	tree := filepath.Dir(arch)
	config := filepath.Join(tree, ".config")
	for _, p := range []string{config, filepath.Join(tree, "include", "config", "kernel.release")} {
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() || st.Size() > maxConfig {
			return ""
		}
	}
	ist, ierr := os.Stat(image)
	cst, cerr := os.Stat(config)
	if ierr != nil || cerr != nil || cst.ModTime().After(ist.ModTime()) {
		return ""
	}
	f, err := os.Open(filepath.Join(tree, "include", "config", "kernel.release"))
	if err != nil {
		return ""
	}
	defer f.Close()
	// Bounded again: the file may have grown since the Stat above.
	rel, err := readAllLimited(f, maxConfig)
	if err != nil || release == "" || strings.TrimSpace(string(rel)) != release {
		return ""
	}
	return config
}

// readRegular reads the file at p, at most limit bytes, if it is a
// regular file (openRegular).
func readRegular(p string, limit int64) ([]byte, error) {
	f, err := openRegular(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := readAllLimited(f, limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return b, nil
}

// openRegular opens the file at p for reading if it is a regular file.
// It opens without blocking and judges what it opened, not what a
// Stat saw before: a FIFO put there (or swapped in since) is refused
// rather than waited on, and a device (/dev/zero) rather than read
// without end. Reads from a regular file do not heed O_NONBLOCK.
func openRegular(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	return f, nil
}

// isELF says whether the file at p starts with the ELF magic.
func isELF(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [4]byte
	_, err = io.ReadFull(f, magic[:])
	return err == nil && string(magic[:]) == "\x7fELF"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Needed returns the modules this run must pack, in load order: the
// guest modules the config builds as modules (all the guest modules the
// tree holds where the config is unknown). With no module tree it
// returns none.
func (s *Source) Needed() ([]Module, error) {
	if s.Modules == nil {
		return nil, nil
	}
	required := func(name string) bool {
		opt := map[string]string{"virtio": "VIRTIO", "virtio_ring": "VIRTIO", "virtio_pci": "VIRTIO_PCI", "virtio_console": "VIRTIO_CONSOLE"}[name]
		return s.config != nil && opt != "" && s.config[opt] == "m"
	}
	return s.Modules.Resolve(GuestModules(), required)
}

// embeddedConfigCached is EmbeddedConfig, its answer kept under
// cacheDir/ikconfig by the image's SHA-256 (sum): SHA.config for a
// config, SHA.none for none. Unpacking a kernel with no config to its
// end takes 80 ms (Debian's), which a run given that image with
// --kernel would otherwise pay each time. Errors are not kept; a cache
// that cannot be written costs only the next run's unpacking.
func embeddedConfigCached(ctx context.Context, image []byte, sum, cacheDir string) ([]byte, error) {
	if cacheDir == "" || len(sum) != 2*sha256.Size {
		return EmbeddedConfig(ctx, image)
	}
	p := filepath.Join(cacheDir, "ikconfig", sum)
	// Only regular files are taken (a FIFO there would block the run),
	// and only a config that holds an option: anything else is read
	// again from the image and kept anew.
	if b, err := readRegular(p+".config", maxConfig); err == nil && len(ParseConfig(b)) > 0 {
		return b, nil
	}
	if st, err := os.Lstat(p + ".none"); err == nil && st.Mode().IsRegular() {
		return nil, ErrNoEmbeddedConfig
	}
	b, err := EmbeddedConfig(ctx, image)
	if err == nil || errors.Is(err, ErrNoEmbeddedConfig) {
		if os.MkdirAll(filepath.Dir(p), 0o755) == nil {
			if err == nil {
				_ = writeAtomic(p+".config", b)
			} else {
				_ = writeAtomic(p+".none", nil)
			}
		}
	}
	return b, err
}
