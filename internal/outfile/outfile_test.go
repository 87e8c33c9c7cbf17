package outfile

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// nodes makes, in a fresh temporary directory, one file of every kind
// the rule must tell apart, and returns the directory. Device nodes are
// made with mknod (a copy of /dev/null's and /dev/full's numbers, never
// the real /dev); where mknod is not permitted, they are left out and
// devices is false.
func nodes(t *testing.T) (dir string, devices bool) {
	t.Helper()
	dir = t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "file"), []byte("old"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "input"), []byte("input"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "dir"), 0o755))
	require.NoError(t, unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	require.NoError(t, os.Symlink("file", filepath.Join(dir, "link-to-file")))
	require.NoError(t, os.Symlink("missing", filepath.Join(dir, "dangling")))
	require.NoError(t, os.Symlink("input", filepath.Join(dir, "link-to-input")))
	require.NoError(t, os.Link(filepath.Join(dir, "input"), filepath.Join(dir, "hardlink-to-input")))
	devices = true
	for name, dev := range map[string]uint64{"null": unix.Mkdev(1, 3), "full": unix.Mkdev(1, 7)} {
		if err := unix.Mknod(filepath.Join(dir, name), unix.S_IFCHR|0o666, int(dev)); err != nil {
			devices = false
			break
		}
	}
	if devices {
		require.NoError(t, os.Symlink("null", filepath.Join(dir, "link-to-null")))
	}
	return dir, devices
}

func TestCheck(t *testing.T) {
	dir, devices := nodes(t)
	p := func(n string) string { return filepath.Join(dir, n) }
	input := p("input")
	tests := []struct {
		name   string
		target string
		opt    Options
		device bool  // needs the mknod nodes
		want   error // nil: allowed
		msg    string
	}{
		{"new file (control)", p("new.zst"), Options{}, false, nil, ""},
		{"existing file", p("file"), Options{}, false, ErrExists, "--force"},
		{"existing file, --force (control)", p("file"), Options{Force: true}, false, nil, ""},
		{"existing file, keep identical (control)", p("file"), Options{KeepIdentical: true}, false, nil, ""},
		{"symlink to a file", p("link-to-file"), Options{}, false, ErrExists, "--force"},
		{"symlink to a file, --force (control)", p("link-to-file"), Options{Force: true}, false, nil, ""},
		{"dangling symlink", p("dangling"), Options{Force: true}, false, ErrNotRegular, "symbolic link to a missing"},
		{"directory", p("dir"), Options{Force: true}, false, ErrNotRegular, "a directory"},
		{"trailing slash", p("new") + "/", Options{}, false, ErrNotRegular, "names a directory"},
		{"FIFO", p("fifo"), Options{Force: true}, false, ErrNotRegular, "a FIFO"},
		{"socket", p("sock"), Options{Force: true}, false, ErrNotRegular, "a socket"},
		{"char device (null)", p("null"), Options{Force: true}, true, ErrNotRegular, "a character device"},
		{"char device (full)", p("full"), Options{Force: true}, true, ErrNotRegular, "a character device"},
		{"char device, stdout hint", p("null"), Options{Force: true, StdoutOK: true}, true, ErrNotRegular, "- for standard output"},
		{"symlink to a device", p("link-to-null"), Options{Force: true}, true, ErrNotRegular, "a character device"},
		{"same as the input", input, Options{Force: true, Inputs: []string{input}}, false, ErrSameAsInput, "destroy the input"},
		{"hard link to the input", p("hardlink-to-input"), Options{Force: true, Inputs: []string{input}}, false, ErrSameAsInput, "destroy the input"},
		{"symlink to the input", p("link-to-input"), Options{Force: true, Inputs: []string{input}}, false, ErrSameAsInput, "destroy the input"},
		{"input named another way", p("./input"), Options{Force: true, Inputs: []string{filepath.Join(dir, "dir", "..", "input")}}, false, ErrSameAsInput, ""},
		{"other input (control)", p("file"), Options{Force: true, Inputs: []string{input, "", Stdout}}, false, nil, ""},
		{"missing directory", p("nodir/x.zst"), Options{}, false, ErrNoDir, "create it first"},
		{"parent is a file", p("file/x.zst"), Options{}, false, ErrNoDir, "not a directory"},
		{"empty name", "", Options{}, false, nil, "names no file"},
		{"stdout", Stdout, Options{}, false, nil, "standard output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.device && !devices {
				t.Skip("mknod is not permitted here: no device nodes to test with")
			}
			err := Check(tt.target, tt.opt)
			if tt.want == nil && tt.msg == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			if tt.want != nil {
				assert.ErrorIs(t, err, tt.want)
			}
			assert.Contains(t, err.Error(), tt.msg)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
	// Nothing was created, and the nodes are what they were.
	for _, n := range []string{"null", "full"} {
		if fi, err := os.Lstat(p(n)); err == nil {
			assert.NotZero(t, fi.Mode()&os.ModeCharDevice, "%s is still a device", n)
		}
	}
	_, err := os.Stat(p("new.zst"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestCreateCommit(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "out.zst")
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)

	f, err := Create(target, Options{})
	require.NoError(t, err)
	assert.Equal(t, dir, filepath.Dir(f.Name()), "the temporary file is in the target's directory")
	_, err = f.WriteString("hello")
	require.NoError(t, err)
	_, err = os.Stat(target)
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing under the target's name before Commit")
	require.NoError(t, f.Commit())
	f.Abort() // harmless after Commit
	b, err := os.ReadFile(target)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	fi, err := os.Stat(target)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm(), "mode 0644 less the umask, as record's")
	assert.Error(t, f.Commit(), "a second Commit")

	// An existing target is refused without --force, replaced with it.
	_, err = Create(target, Options{})
	assert.ErrorIs(t, err, ErrExists)
	f, err = Create(target, Options{Force: true})
	require.NoError(t, err)
	_, err = f.WriteString("again")
	require.NoError(t, err)
	require.NoError(t, f.Commit())
	b, err = os.ReadFile(target)
	require.NoError(t, err)
	assert.Equal(t, "again", string(b))

	// A target created while the file was written is not replaced.
	late := filepath.Join(dir, "late.zst")
	f, err = Create(late, Options{})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(late, []byte("theirs"), 0o644))
	_, err = f.WriteString("mine")
	require.NoError(t, err)
	assert.ErrorIs(t, f.Commit(), ErrExists)
	b, err = os.ReadFile(late)
	require.NoError(t, err)
	assert.Equal(t, "theirs", string(b))

	// A symlink is written through: the file it names gets the content.
	real := filepath.Join(dir, "real.zst")
	require.NoError(t, os.WriteFile(real, []byte("x"), 0o644))
	link := filepath.Join(dir, "link.zst")
	require.NoError(t, os.Symlink("real.zst", link))
	f, err = Create(link, Options{Force: true})
	require.NoError(t, err)
	_, err = f.WriteString("through")
	require.NoError(t, err)
	require.NoError(t, f.Commit())
	b, err = os.ReadFile(real)
	require.NoError(t, err)
	assert.Equal(t, "through", string(b))
	lfi, err := os.Lstat(link)
	require.NoError(t, err)
	assert.NotZero(t, lfi.Mode()&os.ModeSymlink, "the link is still a link")

	assertNoTemp(t, dir)
}

func TestAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "kept.zst")
	require.NoError(t, os.WriteFile(existing, []byte("kept"), 0o644))
	for _, target := range []string{filepath.Join(dir, "new.zst"), existing} {
		f, err := Create(target, Options{Force: true})
		require.NoError(t, err)
		_, err = f.WriteString("half-written")
		require.NoError(t, err)
		f.Abort()
		f.Abort()
	}
	_, err := os.Stat(filepath.Join(dir, "new.zst"))
	assert.ErrorIs(t, err, os.ErrNotExist)
	b, err := os.ReadFile(existing)
	require.NoError(t, err)
	assert.Equal(t, "kept", string(b))
	assertNoTemp(t, dir)
}

func TestKeepIdentical(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "entry")
	require.NoError(t, os.WriteFile(target, []byte("same"), 0o600))
	tests := []struct {
		name    string
		content string
		force   bool
		want    error
		result  string
	}{
		{"identical: kept, no error", "same", false, nil, "same"},
		{"different without --force", "other", false, ErrExists, "same"},
		{"different with --force (control)", "other", true, nil, "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Create(target, Options{KeepIdentical: true, Force: tt.force})
			require.NoError(t, err)
			_, err = f.WriteString(tt.content)
			require.NoError(t, err)
			err = f.Commit()
			if tt.want != nil {
				assert.ErrorIs(t, err, tt.want)
				assert.Contains(t, err.Error(), "holds other content", "it existed before: not said to have appeared meanwhile")
			} else {
				assert.NoError(t, err)
			}
			b, err := os.ReadFile(target)
			require.NoError(t, err)
			assert.Equal(t, tt.result, string(b))
		})
	}
	assertNoTemp(t, dir)
}

func TestCheckDir(t *testing.T) {
	dir, devices := nodes(t)
	p := func(n string) string { return filepath.Join(dir, n) }
	tests := []struct {
		name   string
		dir    string
		device bool
		ok     bool
		msg    string
	}{
		{"existing directory (control)", p("dir"), false, true, ""},
		{"missing, parent exists (control)", p("new"), false, true, ""},
		{"missing, ancestors missing (control)", p("a/b/c"), false, true, ""},
		{"a file", p("file"), false, false, "not a directory"},
		{"under a file", p("file/sub"), false, false, "not a directory"},
		{"a FIFO", p("fifo"), false, false, "a FIFO"},
		{"a device", p("null"), true, false, "a character device"},
		{"empty", "", false, false, "names no directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.device && !devices {
				t.Skip("mknod is not permitted here: no device nodes to test with")
			}
			err := CheckDir(tt.dir, "-o")
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.msg)
		})
	}
	_, err := os.Stat(p("new"))
	assert.ErrorIs(t, err, os.ErrNotExist, "CheckDir creates nothing")
}

func TestKind(t *testing.T) {
	tests := []struct {
		mode os.FileMode
		want string
	}{
		{0o644, "a regular file"},
		{os.ModeDir, "a directory"},
		{os.ModeDevice | os.ModeCharDevice, "a character device"},
		{os.ModeDevice, "a block device"},
		{os.ModeNamedPipe, "a FIFO"},
		{os.ModeSocket, "a socket"},
		{os.ModeSymlink, "a symbolic link"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, Kind(tt.mode))
	}
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		assert.False(t, strings.Contains(e.Name(), ".tmp-"), "temporary file left behind: %s", e.Name())
	}
}

// TestKeepFailed checks that with Options.KeepFailed nothing written is
// lost: a Commit that cannot place the file (the target appeared
// meanwhile) leaves the temporary file and names it, and Keep leaves it
// without a Commit. Control: without the option the failed Commit
// removes it.
func TestKeepFailed(t *testing.T) {
	for _, keep := range []bool{true, false} {
		t.Run(fmt.Sprintf("KeepFailed=%v", keep), func(t *testing.T) {
			dir := t.TempDir()
			late := filepath.Join(dir, "late.zst")
			f, err := Create(late, Options{KeepFailed: keep})
			require.NoError(t, err)
			_, err = f.WriteString("recorded")
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(late, []byte("theirs"), 0o644))
			err = f.Commit()
			require.ErrorIs(t, err, ErrExists)
			b, rerr := os.ReadFile(late)
			require.NoError(t, rerr)
			assert.Equal(t, "theirs", string(b), "the file that appeared is not replaced")
			if !keep {
				assertNoTemp(t, dir)
				return
			}
			assert.Contains(t, err.Error(), "what was written is kept as "+f.Name())
			b, rerr = os.ReadFile(f.Name())
			require.NoError(t, rerr)
			assert.Equal(t, "recorded", string(b))
		})
	}
	t.Run("Keep", func(t *testing.T) {
		dir := t.TempDir()
		f, err := Create(filepath.Join(dir, "cut.zst"), Options{})
		require.NoError(t, err)
		_, err = f.WriteString("up to the failure")
		require.NoError(t, err)
		kept := f.Keep()
		f.Abort()
		assert.Error(t, f.Commit(), "nothing to commit after Keep")
		b, err := os.ReadFile(kept)
		require.NoError(t, err)
		assert.Equal(t, "up to the failure", string(b))
		_, err = os.Stat(filepath.Join(dir, "cut.zst"))
		assert.ErrorIs(t, err, os.ErrNotExist, "the target is not written")
	})
}
