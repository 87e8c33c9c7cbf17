package vmm

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Usage is what the recording process itself cost, read at the end of a
// run: its peak resident memory and its CPU time. The guest's VMM, a
// child process, is not in it.
type Usage struct {
	PeakRSSKiB int64 `json:"vm_hwm_kib"`  // VmHWM of /proc/self/status
	UserMS     int64 `json:"cpu_user_ms"` // user CPU time of this process
	SysMS      int64 `json:"cpu_sys_ms"`  // system CPU time of this process
}

// SelfUsage reads the calling process's Usage.
func SelfUsage() (Usage, error) {
	var u Usage
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return u, fmt.Errorf("getrusage: %w", err)
	}
	u.UserMS = ru.Utime.Sec*1000 + ru.Utime.Usec/1000
	u.SysMS = ru.Stime.Sec*1000 + ru.Stime.Usec/1000
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return u, fmt.Errorf("peak RSS: %w", err)
	}
	hwm, err := statusKiB(b, "VmHWM:")
	if err != nil {
		return u, err
	}
	u.PeakRSSKiB = hwm
	return u, nil
}

// statusKiB returns the value of a "Name:   N kB" line of a
// /proc/PID/status file.
func statusKiB(status []byte, name string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 3 && string(f[0]) == name && string(f[2]) == "kB" {
			return strconv.ParseInt(string(f[1]), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/self/status has no %s line", name)
}
