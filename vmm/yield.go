package vmm

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// setThreadsPolicy moves every thread of this process to the scheduling
// policy policy (unix.SCHED_BATCH or unix.SCHED_NORMAL), keeping each
// thread's nice value. Threads created later inherit the policy of the
// thread that creates them, so the policy holds for the whole process
// until it is set again.
func setThreadsPolicy(policy uint32) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("list this process's threads: %w", err)
	}
	var errs []error
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		attr, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			if !errors.Is(err, unix.ESRCH) { // the thread has exited
				errs = append(errs, fmt.Errorf("thread %d: %w", tid, err))
			}
			continue
		}
		if attr.Policy == policy {
			continue
		}
		attr.Policy = policy
		attr.Size = unix.SizeofSchedAttr
		if err := unix.SchedSetAttr(tid, attr, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("thread %d: %w", tid, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("set scheduling policy %d: %w", policy, errors.Join(errs...))
	}
	return nil
}
