package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// cgroupRoot is where the agent mounts the cgroup2 hierarchy.
const cgroupRoot = "/sys/fs/cgroup"

// cgroups manages the agent's cgroups under root.
type cgroups struct{ root string }

// create makes the cgroup name with the cpu controller enabled and
// returns an open descriptor of its directory, for CLONE_INTO_CGROUP.
func (c cgroups) create(name string) (*os.File, error) {
	// Enabling the controller may fail on kernels without it; the
	// workers still run, only cpu.weight is then unavailable.
	_ = os.WriteFile(filepath.Join(c.root, "cgroup.subtree_control"), []byte("+cpu"), 0)
	dir := filepath.Join(c.root, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create cgroup %s: %w", name, err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", name, err)
	}
	return f, nil
}

// usage returns the CPU time the cgroup's tasks used (cpu.stat
// usage_usec), in nanoseconds.
func (c cgroups) usage(name string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(c.root, name, "cpu.stat"))
	if err != nil {
		return 0, fmt.Errorf("read cgroup %s cpu.stat: %w", name, err)
	}
	return parseUsage(string(b))
}

// parseUsage extracts usage_usec from a cpu.stat file, in nanoseconds.
func parseUsage(stat string) (int64, error) {
	for _, line := range strings.Split(stat, "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("cpu.stat usage_usec %q: %w", v, err)
			}
			return us * 1000, nil
		}
	}
	return 0, errors.New("cpu.stat has no usage_usec line")
}

// workerResult is what one worker did.
type workerResult struct {
	ID     int    `json:"id"`
	Cgroup string `json:"cgroup"`
	CPUNS  int64  `json:"cpu_ns"`           // user + system time of the worker process
	Status int    `json:"status"`           // exit status, 128+N for signal N
	Error  string `json:"error,omitempty"`  // why it could not run
	Killed bool   `json:"killed,omitempty"` // stopped early by the scenario's context
}

// cgroupResult is one cgroup's share.
type cgroupResult struct {
	Name    string `json:"name"`
	Workers int    `json:"workers"`
	CPUNS   int64  `json:"cpu_ns"`
}

// workloadResult is the TEST payload's measurement part.
type workloadResult struct {
	Workers []workerResult `json:"workers"`
	Cgroups []cgroupResult `json:"cgroups"`
	// Spread is |a-b| / max(a,b) of the two cgroups' CPU time per worker:
	// 0 when both got the same share.
	Spread float64 `json:"spread"`
}

// The two cgroups the workers alternate between.
const (
	cgroupA = "ktstr-a"
	cgroupB = "ktstr-b"
)

// runWorkers runs n spinning workers for d, alternating between the two
// worker cgroups, forwarding their output as SOUT/SERR, and measures
// the CPU time each got. onStart is called once all are started.
func runWorkers(ctx context.Context, a *agent, n int, d time.Duration, onStart func() error) (workloadResult, error) {
	var res workloadResult
	workerCgroups := [2]string{cgroupA, cgroupB}
	var fds [2]*os.File
	for i, name := range workerCgroups {
		f, err := a.cg.create(name)
		if err != nil {
			return res, err
		}
		defer f.Close()
		fds[i] = f
	}
	base := [2]int64{}
	for i, name := range workerCgroups {
		base[i], _ = a.cg.usage(name)
	}
	cmds := make([]*exec.Cmd, n)
	res.Workers = make([]workerResult, n)
	for i := range cmds {
		g := i % 2
		res.Workers[i] = workerResult{ID: i, Cgroup: workerCgroups[g]}
		cmd := exec.CommandContext(ctx, a.self, "worker", "-id", strconv.Itoa(i), "-d", d.String())
		cmd.Stdout = frameWriter{a, wire.Stdout}
		cmd.Stderr = frameWriter{a, wire.Stderr}
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fds[g].Fd())}
		if err := cmd.Start(); err != nil {
			res.Workers[i].Error = err.Error()
			res.Workers[i].Status = -1
			continue
		}
		cmds[i] = cmd
	}
	if onStart != nil {
		if err := onStart(); err != nil {
			return res, err
		}
	}
	for i, cmd := range cmds {
		if cmd == nil {
			continue
		}
		err := cmd.Wait()
		w := &res.Workers[i]
		if ps := cmd.ProcessState; ps != nil {
			w.CPUNS = int64(ps.UserTime() + ps.SystemTime())
			w.Status = exitStatus(ps)
		}
		if ctx.Err() != nil {
			w.Killed = true
		} else if err != nil {
			w.Error = err.Error()
		}
	}
	var perWorker [2]float64
	for g, name := range workerCgroups {
		cr := cgroupResult{Name: name}
		for _, w := range res.Workers {
			if w.Cgroup == name {
				cr.Workers++
			}
		}
		if u, err := a.cg.usage(name); err == nil {
			cr.CPUNS = u - base[g]
		} else {
			// Without cpu.stat fall back to the workers' own times.
			for _, w := range res.Workers {
				if w.Cgroup == name {
					cr.CPUNS += w.CPUNS
				}
			}
		}
		if cr.Workers > 0 {
			perWorker[g] = float64(cr.CPUNS) / float64(cr.Workers)
		}
		res.Cgroups = append(res.Cgroups, cr)
	}
	res.Spread = spread(perWorker[0], perWorker[1])
	return res, nil
}

// spread returns |a-b| / max(a,b), or 0 when both are 0.
func spread(a, b float64) float64 {
	m := math.Max(a, b)
	if m == 0 {
		return 0
	}
	return math.Abs(a-b) / m
}

// exitStatus maps a finished process to one integer: its exit code, or
// 128+N when signal N killed it.
func exitStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
