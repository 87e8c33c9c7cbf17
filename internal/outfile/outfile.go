// Package outfile is ktstr's one rule for writing a file a user named
// (`record -o`, `trace import -o`, `corpus export -o`, `replay
// --save-failures`, `record --console`):
//
//   - only regular files are ever created or replaced, and always
//     atomically: the content goes to a temporary file in the target's
//     own directory, created with mode 0644 less the umask (what a
//     recorded trace always had), which is renamed over the target only
//     once every byte was written, synced and closed;
//   - an existing target is replaced only with Options.Force (or left as
//     it is when Options.KeepIdentical and it holds the same bytes);
//   - a target that is the same file as one of the command's inputs is
//     refused, --force or not;
//   - a target that exists and is not a regular file (a directory, a
//     device such as /dev/null or /dev/full, a FIFO, a socket) is
//     refused; a symbolic link is followed, so the file it names is the
//     target, and a dangling one is refused;
//   - a write, sync or close error leaves nothing under the target's name
//     (the temporary file is removed, an existing target is untouched).
//
// Streaming to standard output (`-o -`) is the caller's business: [IsStdout]
// names the convention. Every error from this package is the user's to
// fix (ktstr maps it to exit status 2) and says what to do.
package outfile

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Perm is the mode every file written under this rule is created with,
// before the umask: the mode `ktstr record` has always used.
const Perm os.FileMode = 0o644

// Stdout is the target name that means standard output, for the commands
// that can stream their output there.
const Stdout = "-"

// Errors the checks wrap, so callers and tests can tell them apart.
var (
	// ErrExists: the target exists and Options.Force was not given.
	ErrExists = errors.New("the file exists")
	// ErrNotRegular: the target exists and is not a regular file.
	ErrNotRegular = errors.New("not a regular file")
	// ErrSameAsInput: the target is the same file as an input.
	ErrSameAsInput = errors.New("the same file as an input")
	// ErrNoDir: the directory the target would go in is missing or
	// cannot be written.
	ErrNoDir = errors.New("no writable directory")
)

// Options says how a target may be written.
type Options struct {
	// Force allows replacing an existing regular file.
	Force bool
	// KeepIdentical succeeds without replacing an existing regular file
	// that already holds exactly the bytes written (content-named files:
	// fuzz corpus entries, saved mutants).
	KeepIdentical bool
	// Inputs are the files the command reads; the target must not be
	// any of them. Empty names and Stdout are ignored.
	Inputs []string
	// Flag names the option that gave the target, for messages (e.g.
	// "-o", "--console"); empty means "-o".
	Flag string
	// StdoutOK says the command accepts Stdout as the target, for the
	// hint a refused device gets.
	StdoutOK bool
	// KeepFailed says what was written must not be lost (a recorded
	// trace): a Commit that fails leaves the temporary file where it is
	// and its error names it, instead of removing it.
	KeepFailed bool
}

func (o Options) flag() string {
	if o.Flag == "" {
		return "-o"
	}
	return o.Flag
}

// IsStdout reports whether name means standard output.
func IsStdout(name string) bool { return name == Stdout }

// Kind describes a file mode in words: "a directory", "a character
// device", ….
func Kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "not a regular file"
}

// Check reports whether target may be written under opt, writing
// nothing: commands call it before their work starts, so that a bad
// output is found before minutes of work, not after.
func Check(target string, opt Options) error {
	_, err := resolve(target, opt)
	return err
}

// resolve checks target and returns the path to write: the target
// itself, or the file a symbolic link names.
func resolve(target string, opt Options) (string, error) {
	if target == "" {
		return "", fmt.Errorf("%s names no file", opt.flag())
	}
	if IsStdout(target) {
		return "", fmt.Errorf("%s -: this command cannot write to standard output; name a file", opt.flag())
	}
	if strings.HasSuffix(target, "/") {
		return "", fmt.Errorf("%s %s: %w: it names a directory; name a file in it", opt.flag(), target, ErrNotRegular)
	}
	path := target
	fi, err := os.Lstat(path)
	if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		real, rerr := filepath.EvalSymlinks(path)
		if rerr != nil {
			return "", fmt.Errorf("%s %s: %w: it is a symbolic link to a missing file or directory (%v); name the file itself", opt.flag(), target, ErrNotRegular, rerr)
		}
		path = real
		fi, err = os.Lstat(path)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, unix.ENOTDIR):
		if err := writableDir(filepath.Dir(path), target, opt); err != nil {
			return "", err
		}
		return path, nil
	case err != nil:
		return "", fmt.Errorf("%s %s: %w; check the path", opt.flag(), target, err)
	case !fi.Mode().IsRegular():
		hint := "name a regular file"
		if opt.StdoutOK {
			hint += ", or - for standard output"
		}
		return "", fmt.Errorf("%s %s: %w: it is %s, and ktstr writes only regular files; %s", opt.flag(), target, ErrNotRegular, Kind(fi.Mode()), hint)
	}
	for _, in := range opt.Inputs {
		if in == "" || IsStdout(in) {
			continue
		}
		if ii, err := os.Stat(in); err == nil && os.SameFile(fi, ii) {
			return "", fmt.Errorf("%s %s: %w %s: writing it would destroy the input; choose another %s", opt.flag(), target, ErrSameAsInput, in, opt.flag())
		}
	}
	if !opt.Force && !opt.KeepIdentical {
		return "", fmt.Errorf("%s %s: %w; choose another %s, or add --force to replace it", opt.flag(), target, ErrExists, opt.flag())
	}
	if err := writableDir(filepath.Dir(path), target, opt); err != nil {
		return "", err
	}
	return path, nil
}

// writableDir checks that dir is a directory this process can create
// files in.
func writableDir(dir, target string, opt Options) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%s %s: %w: directory %s: %v; create it first, or choose another %s", opt.flag(), target, ErrNoDir, dir, unwrapPath(err), opt.flag())
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s %s: %w: %s is %s, not a directory; choose another %s", opt.flag(), target, ErrNoDir, dir, Kind(fi.Mode()), opt.flag())
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("%s %s: %w: cannot create files in %s: %v; choose another %s", opt.flag(), target, ErrNoDir, dir, err, opt.flag())
	}
	return nil
}

// unwrapPath drops the path an *fs.PathError repeats.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// CheckDir reports whether dir can hold files written under this rule:
// an existing directory this process can create files in, or a path
// whose nearest existing ancestor is one (MkdirAll creates the rest).
// flag names the option, for messages.
func CheckDir(dir, flag string) error {
	if dir == "" {
		return fmt.Errorf("%s names no directory", flag)
	}
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			if filepath.Dir(p) == p {
				return fmt.Errorf("%s %s: %w: %v", flag, dir, ErrNoDir, err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w: %v; check the path", flag, dir, ErrNoDir, unwrapPath(err))
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s %s: %w: %s is %s, not a directory; choose another %s", flag, dir, ErrNoDir, p, Kind(fi.Mode()), flag)
		}
		if err := unix.Access(p, unix.W_OK|unix.X_OK); err != nil {
			return fmt.Errorf("%s %s: %w: cannot create files in %s: %v; choose another %s", flag, dir, ErrNoDir, p, err, flag)
		}
		return nil
	}
}

// File is a target being written: a temporary file in the target's
// directory, which Commit puts in place and Abort removes.
type File struct {
	*os.File // the temporary file; write the content to it

	target  string // the name given
	path    string // the resolved path Commit writes
	opt     Options
	done    bool
	existed bool // the target existed at Create (KeepIdentical lets it)
}

// Create checks target under opt and opens the temporary file its
// content goes to. Exactly one of Commit or Abort must follow (Abort is
// harmless after Commit, so `defer f.Abort()` is the idiom).
func Create(target string, opt Options) (*File, error) {
	path, err := resolve(target, opt)
	if err != nil {
		return nil, err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	for range 100 {
		tmp := filepath.Join(dir, "."+base+".tmp-"+strings.ToLower(rand.Text()[:10]))
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, Perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w: %v; choose another %s", opt.flag(), target, ErrNoDir, unwrapPath(err), opt.flag())
		}
		_, serr := os.Lstat(path)
		return &File{File: f, target: target, path: path, opt: opt, existed: serr == nil}, nil
	}
	return nil, fmt.Errorf("%s %s: cannot create a temporary file in %s; remove its .%s.tmp-* files", opt.flag(), target, dir, base)
}

// Target returns the name the file will have once committed, as given.
func (f *File) Target() string { return f.target }

// Commit syncs and closes the temporary file and puts it in place of the
// target. On any error the temporary file is removed and the target is
// as it was; the error says what went wrong.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("%s %s: already committed or aborted", f.opt.flag(), f.target)
	}
	tmp := f.Name()
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	f.done = true
	if err != nil {
		err = fmt.Errorf("writing %s: %w; nothing was written under that name (check the disk)", f.target, unwrapPath(err))
		return f.failed(tmp, err)
	}
	if err := f.place(tmp); err != nil {
		return f.failed(tmp, err)
	}
	return nil
}

// failed removes the temporary file of a failed Commit, or with
// Options.KeepFailed leaves it and says where it is.
func (f *File) failed(tmp string, err error) error {
	if !f.opt.KeepFailed {
		os.Remove(tmp)
		return err
	}
	return fmt.Errorf("%w; what was written is kept as %s", err, tmp)
}

// Keep closes the temporary file without putting it in place and
// returns its name: for a caller that cannot complete the content (a
// write failed) but must not lose what was written. Commit and Abort do
// nothing after it.
func (f *File) Keep() string {
	if !f.done {
		f.done = true
		f.Close()
	}
	return f.Name()
}

// place moves the complete temporary file to the target.
func (f *File) place(tmp string) error {
	fi, err := os.Lstat(f.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("writing %s: %w", f.target, err)
	case !fi.Mode().IsRegular():
		// It changed since the check: never replace a non-file.
		return fmt.Errorf("%s %s: %w: it is now %s; nothing was written", f.opt.flag(), f.target, ErrNotRegular, Kind(fi.Mode()))
	case f.opt.KeepIdentical && sameContent(tmp, f.path):
		return os.Remove(tmp)
	case !f.opt.Force && f.existed:
		return fmt.Errorf("%s %s: %w and holds other content; remove it, or add --force to replace it", f.opt.flag(), f.target, ErrExists)
	case !f.opt.Force:
		return fmt.Errorf("%s %s: %w (it was created while ktstr wrote); choose another %s, or add --force to replace it", f.opt.flag(), f.target, ErrExists, f.opt.flag())
	}
	if !f.opt.Force {
		// A hard link never replaces a file that appeared meanwhile.
		err := os.Link(tmp, f.path)
		if errors.Is(err, fs.ErrExist) {
			if f.opt.KeepIdentical && sameContent(tmp, f.path) {
				return os.Remove(tmp)
			}
			return fmt.Errorf("%s %s: %w (it was created while ktstr wrote); choose another %s, or add --force to replace it", f.opt.flag(), f.target, ErrExists, f.opt.flag())
		}
		if err == nil {
			return os.Remove(tmp)
		}
		// A file system without hard links: rename, as with --force.
	}
	if err := os.Rename(tmp, f.path); err != nil {
		return fmt.Errorf("writing %s: %w", f.target, unwrapPath(err))
	}
	return nil
}

// Abort removes the temporary file; the target is left as it was. It
// does nothing after Commit or a previous Abort.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	os.Remove(f.Name())
}

// sameContent reports whether the regular files a and b hold the same
// bytes, reading both in pieces.
func sameContent(a, b string) bool {
	fa, err := os.Open(a)
	if err != nil {
		return false
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false
	}
	defer fb.Close()
	sa, erra := fa.Stat()
	sb, errb := fb.Stat()
	if erra != nil || errb != nil || !sb.Mode().IsRegular() || sa.Size() != sb.Size() {
		return false
	}
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea != nil || eb != nil {
			return (ea == io.EOF || ea == io.ErrUnexpectedEOF) && (eb == io.EOF || eb == io.ErrUnexpectedEOF)
		}
	}
}
