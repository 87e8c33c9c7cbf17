package kernel

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// maxBuiltinList bounds modules.builtin (Debian 6.12's: 30 KiB).
const maxBuiltinList = 4 << 20

// Bounds on what Resolve gathers for one run: the guest modules and
// their dependencies are six files of 20 to 120 KiB on Debian, and all
// of them are held in memory and packed into the initramfs.
const (
	maxResolvedModules = 64
	maxResolvedBytes   = 128 << 20
)

// moduleNameSyntax is what a module's name may be (include/linux/module.h:
// MODULE_NAME_LEN is 56 with its NUL).
var moduleNameSyntax = regexp.MustCompile(`^[A-Za-z0-9_-]{1,55}$`)

// maxModuleDict bounds the dictionary an .ko.xz may ask for: Linux packs
// modules with a 1 MiB one (scripts/Makefile.modinst), xz -9 uses 64 MiB.
const maxModuleDict = 64 << 20

// ErrBadModules reports a module tree that cannot serve a run: a module
// missing, corrupt, for another release or another architecture.
var ErrBadModules = errors.New("kernel modules unusable")

// GuestModules are the modules a run needs where the kernel does not
// build them in: the virtio core and ring, virtio-pci (and its legacy and
// modern helpers, modules of their own since 5.x) and virtio-console.
// Their dependencies come from each module's .modinfo.
func GuestModules() []string {
	return []string{"virtio", "virtio_ring", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_console"}
}

// Module is one loadable module, decompressed, ready to pack.
type Module struct {
	Name    string   // as the kernel names it: dashes become underscores
	Path    string   // the file it came from
	Depends []string // .modinfo depends=
	Data    []byte   // the ELF object, decompressed

	info map[string]string // all of .modinfo
}

// check refuses a module built for another release: its vermagic starts
// with the release it was built for.
func (mod *Module) check(release string) error {
	// A vermagic of only blanks has no release in it: no field to index.
	vm := strings.Fields(mod.info["vermagic"])
	if len(vm) == 0 {
		return fmt.Errorf("%w: %s has no vermagic; give the module tree this kernel was built with", ErrBadModules, mod.Path)
	}
	if release != "" && vm[0] != release {
		return fmt.Errorf("%w: %s is built for %s, not %s", ErrBadModules, mod.Path, vm[0], release)
	}
	return nil
}

// Modules is a release's module tree: lib/modules/RELEASE of a package
// or an installed system.
type Modules struct {
	Dir     string
	Release string
	files   map[string]string // module name → file
	builtin map[string]bool   // modules.builtin
}

// moduleName turns a file name (virtio-rng.ko.xz) into the name the
// kernel uses (virtio_rng).
func moduleName(file string) (string, bool) {
	base := filepath.Base(file)
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if n, ok := strings.CutSuffix(base, ext); ok && n != "" {
			return strings.ReplaceAll(n, "-", "_"), true
		}
	}
	return "", false
}

// maxTreeEntries bounds the entries OpenModules looks at: Debian 6.12's
// lib/modules/RELEASE holds about 5,000 files and directories.
const maxTreeEntries = 200_000

// OpenModules indexes the module tree dir (lib/modules/RELEASE): every
// .ko, .ko.xz, .ko.zst and .ko.gz under it, and modules.builtin. Links
// inside the tree are not followed; a tree of more than maxTreeEntries
// files and directories is refused.
func OpenModules(dir, release string) (*Modules, error) {
	return openModules(dir, release, maxTreeEntries)
}

// openModules is OpenModules looking at no more than maxEntries entries.
func openModules(dir, release string, maxEntries int) (*Modules, error) {
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a module directory (lib/modules/RELEASE)", ErrBadModules, dir)
	}
	m := &Modules{Dir: dir, Release: release, files: map[string]string{}, builtin: map[string]bool{}}
	err = walkBounded(dir, maxEntries, func(p string) {
		if n, ok := moduleName(p); ok {
			// Of two files for one module, the first in lexical walk
			// order (kernel/ before updates/), whatever order the
			// directories list them in.
			if old, dup := m.files[n]; !dup || slices.Compare(strings.Split(p, "/"), strings.Split(old, "/")) < 0 {
				m.files[n] = p
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", ErrBadModules, dir, err)
	}
	b, err := readRegular(filepath.Join(dir, "modules.builtin"), maxBuiltinList)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("%w: %w; give a module tree whose modules.builtin is the kernel's own", ErrBadModules, err)
	default:
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if n, ok := moduleName(strings.TrimSpace(sc.Text())); ok {
				m.builtin[n] = true
			}
		}
	}
	return m, nil
}

// walkBounded calls file for each regular file under dir, following no
// link but dir itself, and fails once it has seen more than maxEntries
// entries. Directories are read a batch at a time, so a directory of
// millions of entries is not held whole before the bound is seen.
func walkBounded(dir string, maxEntries int, file func(p string)) error {
	seen := 0
	pending := []string{dir}
	for len(pending) > 0 {
		d := pending[len(pending)-1]
		pending = pending[:len(pending)-1]
		f, err := os.Open(d)
		if err != nil {
			return err
		}
		for {
			ents, err := f.ReadDir(256)
			for _, e := range ents {
				if seen++; seen > maxEntries {
					f.Close()
					return fmt.Errorf("it holds more than %d files and directories, which no kernel's module tree does; give lib/modules/RELEASE itself", maxEntries)
				}
				p := filepath.Join(d, e.Name())
				switch {
				case e.IsDir():
					pending = append(pending, p)
				case e.Type().IsRegular():
					file(p)
				}
			}
			if errors.Is(err, io.EOF) || err == nil && len(ents) == 0 {
				break
			}
			if err != nil {
				f.Close()
				return err
			}
		}
		f.Close()
	}
	return nil
}

// Builtin reports whether modules.builtin lists name (it needs no
// loading).
func (m *Modules) Builtin(name string) bool { return m.builtin[name] }

// Has reports whether the tree holds a file for module name.
func (m *Modules) Has(name string) bool { _, ok := m.files[name]; return ok }

// Resolve returns the modules names need, with everything they depend
// on, in an order they can be loaded (dependencies first). Built-in
// modules are left out; a name that is neither built in nor in the tree
// is an error only when required is true for it (a kernel that builds it
// in with no modules.builtin to say so needs nothing).
//
// What it gathers is bounded, whatever the tree's .modinfo says: at most
// maxResolvedModules modules of maxResolvedBytes in all, decompressed.
func (m *Modules) Resolve(names []string, required func(name string) bool) ([]Module, error) {
	var order []Module
	var total int64           // bytes read so far
	read := 0                 // modules read so far, those still being visited too
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name, from string) error
	visit = func(name, from string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("%w: %s depends on itself through %s", ErrBadModules, name, from)
		case 2:
			return nil
		}
		if m.builtin[name] {
			state[name] = 2
			return nil
		}
		file, ok := m.files[name]
		if !ok {
			state[name] = 2
			if from != "" {
				return fmt.Errorf("%w: %s needs %s, which %s does not hold", ErrBadModules, from, name, m.Dir)
			}
			if required(name) {
				return fmt.Errorf("%w: %s holds no %s and modules.builtin does not list it", ErrBadModules, m.Dir, name)
			}
			return nil
		}
		state[name] = 1
		if read++; read > maxResolvedModules {
			return fmt.Errorf("%w: %s needs more than %d modules (at %s); a kernel's virtio modules are a handful: give the module tree of this kernel's release", ErrBadModules, strings.Join(names, ","), maxResolvedModules, name)
		}
		mod, err := readModule(file, min(maxModule, maxResolvedBytes-total))
		if err != nil {
			if errors.Is(err, errOverBound) && total > 0 {
				return fmt.Errorf("%w: the modules %s needs come to more than %d MiB decompressed (at %s); a kernel's virtio modules are well under 1 MiB: give the module tree of this kernel's release", ErrBadModules, strings.Join(names, ","), maxResolvedBytes>>20, file)
			}
			return err
		}
		total += int64(len(mod.Data))
		if err := mod.check(m.Release); err != nil {
			return err
		}
		for _, d := range mod.Depends {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, mod)
		return nil
	}
	for _, n := range names {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// ReadModule reads and decompresses the module at path (at most 64 MiB)
// and parses its .modinfo.
func ReadModule(path string) (Module, error) { return readModule(path, maxModule) }

// readModule is ReadModule with limit for the bytes decompressed.
func readModule(path string, limit int64) (Module, error) {
	f, err := openRegular(path)
	if err != nil {
		return Module{}, fmt.Errorf("%w: %w", ErrBadModules, err)
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(path, ".xz"):
		x, err := newXZReader(f, maxModuleDict)
		if err != nil {
			return Module{}, fmt.Errorf("%w: %s: %w", ErrBadModules, path, err)
		}
		r = x
	case strings.HasSuffix(path, ".zst"):
		z, err := zstd.NewReader(f, zstd.WithDecoderMaxWindow(1<<27))
		if err != nil {
			return Module{}, fmt.Errorf("%w: %s: %w", ErrBadModules, path, err)
		}
		defer z.Close()
		r = z
	case strings.HasSuffix(path, ".gz"):
		g, err := gzip.NewReader(f)
		if err != nil {
			return Module{}, fmt.Errorf("%w: %s: %w", ErrBadModules, path, err)
		}
		r = g
	}
	data, err := readAllLimited(r, limit)
	if err != nil {
		return Module{}, fmt.Errorf("%w: %s does not decompress: %w", ErrBadModules, path, err)
	}
	name, _ := moduleName(path)
	mod := Module{Name: name, Path: path, Data: data}
	info, err := modinfo(data)
	if err != nil {
		return Module{}, fmt.Errorf("%w: %s: %w", ErrBadModules, path, err)
	}
	if n := info["name"]; n != "" {
		mod.Name = n
	}
	// The name becomes a file name in the initramfs (vmm.GuestModulesDir):
	// only what the kernel itself allows in one (MODULE_NAME_LEN 56).
	if !moduleNameSyntax.MatchString(mod.Name) {
		return Module{}, fmt.Errorf("%w: %s names itself %q in .modinfo, which is no module name (letters, digits, '_' and '-', at most 55)", ErrBadModules, path, mod.Name)
	}
	if d := info["depends"]; d != "" {
		mod.Depends = strings.Split(d, ",")
	}
	sort.Strings(mod.Depends)
	mod.info = info
	return mod, nil
}

// modinfo returns the key=value pairs of an x86-64 module's .modinfo
// section (NUL-separated; a repeated key keeps its first value).
func modinfo(obj []byte) (map[string]string, error) {
	ef, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil {
		return nil, fmt.Errorf("not an ELF object: %w", err)
	}
	defer ef.Close()
	if ef.Machine != elf.EM_X86_64 || ef.Class != elf.ELFCLASS64 || ef.Type != elf.ET_REL {
		return nil, fmt.Errorf("a %s %s %s object, not an x86-64 kernel module", ef.Class, ef.Machine, ef.Type)
	}
	sec := ef.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("no .modinfo section: not a kernel module")
	}
	b, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf(".modinfo: %w", err)
	}
	info := map[string]string{}
	for _, kv := range bytes.Split(b, []byte{0}) {
		k, v, ok := bytes.Cut(kv, []byte("="))
		if ok && len(k) > 0 {
			if _, seen := info[string(k)]; !seen {
				info[string(k)] = string(v)
			}
		}
	}
	return info, nil
}
