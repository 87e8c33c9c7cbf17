package vmm

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestCmdline(t *testing.T) {
	tests := []struct {
		name string
		o    GuestOptions
		want string
	}{
		{"defaults", GuestOptions{}, "console=ttyS0 panic=-1 quiet loglevel=4"},
		{"scenario", GuestOptions{Scenario: "steady", Workers: 3},
			"console=ttyS0 panic=-1 quiet loglevel=4 ktstr.scenario=steady ktstr.workers=3"},
		// The scheduler keeps its name in the guest: sched_ext judges
		// scx_simple by the ops name "simple" it derives from it.
		{"scheduler", GuestOptions{Scenario: "sched-ext", Scheduler: "/cache/build/scx_simple"},
			"console=ttyS0 panic=-1 quiet loglevel=4 ktstr.scenario=sched-ext ktstr.scheduler=/bin/scx_simple"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Cmdline(tt.o))
		})
	}
}

// TestBuildInitramfsPacksSchedulerUnderItsName: the scheduler lands at
// the path the command line names; without one, only /init is packed.
func TestBuildInitramfsPacksSchedulerUnderItsName(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "agent")
	sched := filepath.Join(dir, "scx_simple")
	require.NoError(t, os.WriteFile(agent, []byte("agent"), 0o755))
	require.NoError(t, os.WriteFile(sched, []byte("sched"), 0o755))
	for _, tt := range []struct {
		scheduler string
		want      map[string]string
	}{
		{"", map[string]string{"init": "agent"}},
		{sched, map[string]string{"init": "agent", "bin/scx_simple": "sched"}},
	} {
		out := filepath.Join(dir, "initrd.zst")
		require.NoError(t, BuildInitramfs(out, agent, tt.scheduler))
		assert.Equal(t, tt.want, regularFiles(t, out), "scheduler %q", tt.scheduler)
	}
}

// regularFiles lists the regular files of a zstd newc archive with
// their contents, names without a leading slash.
func regularFiles(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := zstd.NewReader(f)
	require.NoError(t, err)
	defer zr.Close()
	r := cpio.NewReader(zr)
	files := map[string]string{}
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		require.NoError(t, err)
		if h.Mode.IsRegular() {
			b := make([]byte, h.Size)
			_, err := io.ReadFull(r, b)
			require.NoError(t, err)
			files[filepath.Clean("/" + h.Name)[1:]] = string(b)
		}
	}
}

func TestGuestFillsHost(t *testing.T) {
	for _, c := range []struct {
		guest, host int
		want        bool
	}{
		{2, 2, true}, // the build machines: no core to spare
		{4, 2, true},
		{2, 3, false}, // a spare core
		{2, 16, false},
	} {
		assert.Equal(t, c.want, GuestFillsHost(c.guest, c.host), "guest %d, host %d", c.guest, c.host)
	}
}

// TestMakeRoom: a run whose guest fills this host yields and runs on one
// P until restored, unless GOMAXPROCS is set in the environment; a run
// that leaves a core spare changes nothing.
func TestMakeRoom(t *testing.T) {
	t.Setenv("GOMAXPROCS", "") // os.Getenv reads "" as unset, as runtime does
	before := runtime.GOMAXPROCS(0)

	fills := &Run{Config: Config{CPUs: runtime.NumCPU()}}
	restore := fills.MakeRoom()
	assert.True(t, fills.YieldCPU)
	assert.Equal(t, 1, runtime.GOMAXPROCS(0))
	restore()
	assert.Equal(t, before, runtime.GOMAXPROCS(0), "restored")

	t.Setenv("GOMAXPROCS", "2")
	set := &Run{Config: Config{CPUs: runtime.NumCPU()}}
	set.MakeRoom()()
	assert.True(t, set.YieldCPU, "still yields")
	assert.Equal(t, before, runtime.GOMAXPROCS(0), "GOMAXPROCS from the environment is left alone")

	if runtime.NumCPU() > 1 {
		spare := &Run{Config: Config{CPUs: runtime.NumCPU() - 1}}
		restore := spare.MakeRoom()
		assert.False(t, spare.YieldCPU)
		assert.Equal(t, before, runtime.GOMAXPROCS(0))
		restore()
	}
}

// TestCachedInitramfs: the same agent, scheduler and modules give the
// same cached image, built once; another module gives another.
func TestCachedInitramfs(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "agent")
	require.NoError(t, os.WriteFile(agent, []byte("#!agent"), 0o755))
	cache := filepath.Join(dir, "cache")
	a, err := CachedInitramfs(cache, agent, "")
	require.NoError(t, err)
	st, err := os.Stat(a)
	require.NoError(t, err)
	b, err := CachedInitramfs(cache, agent, "")
	require.NoError(t, err)
	assert.Equal(t, a, b)
	st2, err := os.Stat(b)
	require.NoError(t, err)
	assert.Equal(t, st.ModTime(), st2.ModTime(), "built once")
	c, err := CachedInitramfs(cache, agent, "", GuestModule{Name: "virtio", Data: []byte("x")})
	require.NoError(t, err)
	assert.NotEqual(t, a, c, "other modules, another image")
	require.NoError(t, os.WriteFile(agent, []byte("#!agent v2"), 0o755))
	d, err := CachedInitramfs(cache, agent, "")
	require.NoError(t, err)
	assert.NotEqual(t, a, d, "another agent, another image")
}

// TestCachedInitramfsTakesOnlyWhatItBuilt: what sits at the cache's name
// counts as built only if it is a non-empty regular file; a FIFO, a link
// or an empty file there is replaced by the image, not returned. The
// agent is read once, as a regular file only. Control: the cached image
// is byte for byte what BuildInitramfs makes of the same files.
func TestCachedInitramfsTakesOnlyWhatItBuilt(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "agent")
	require.NoError(t, os.WriteFile(agent, []byte("#!agent"), 0o755))
	sched := filepath.Join(dir, "scx_simple")
	require.NoError(t, os.WriteFile(sched, []byte("#!scheduler"), 0o755))
	mod := GuestModule{Name: "virtio_console", Data: []byte("\x7fELF module")}
	cache := filepath.Join(dir, "cache")
	built, err := CachedInitramfs(cache, agent, sched, mod)
	require.NoError(t, err)
	want := filepath.Join(dir, "want.cpio.zst")
	require.NoError(t, BuildInitramfs(want, agent, sched, mod))
	a, err := os.ReadFile(built)
	require.NoError(t, err)
	b, err := os.ReadFile(want)
	require.NoError(t, err)
	require.Equal(t, b, a, "the cache packs what BuildInitramfs packs")

	for name, plant := range map[string]func(string) error{
		"fifo":         func(p string) error { return unix.Mkfifo(p, 0o644) },
		"empty file":   func(p string) error { return os.WriteFile(p, nil, 0o644) },
		"link to /etc": func(p string) error { return os.Symlink("/etc/hostname", p) },
		"directory":    func(p string) error { return os.Mkdir(p, 0o755) },
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.RemoveAll(built))
			require.NoError(t, plant(built))
			got, err := CachedInitramfs(cache, agent, sched, mod)
			if name == "directory" {
				// A directory cannot be renamed over; refused, not taken.
				require.Error(t, err)
				require.NoError(t, os.RemoveAll(built))
				return
			}
			require.NoError(t, err)
			fi, err := os.Lstat(got)
			require.NoError(t, err)
			require.True(t, fi.Mode().IsRegular(), "%v", fi.Mode())
			c, err := os.ReadFile(got)
			require.NoError(t, err)
			assert.Equal(t, a, c, "the image was built again over what sat there")
		})
	}

	fifo := filepath.Join(dir, "agent-fifo")
	require.NoError(t, unix.Mkfifo(fifo, 0o644))
	done := make(chan error, 1)
	go func() { _, err := CachedInitramfs(cache, fifo, ""); done <- err }()
	select {
	case err := <-done:
		require.Error(t, err)
		assert.Contains(t, err.Error(), "not a regular file")
	case <-time.After(10 * time.Second):
		t.Fatal("CachedInitramfs still reading a FIFO agent after 10 s")
	}
}
