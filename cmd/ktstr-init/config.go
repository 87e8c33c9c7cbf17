package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// config is what the kernel command line asks of the agent.
type config struct {
	Scenario  string        // scenario name
	Duration  time.Duration // how long workers run
	Workers   int           // spinning workers
	Scheduler string        // scheduler binary inside the guest; empty: none
}

func defaultConfig() config {
	return config{Scenario: "steady", Duration: 2 * time.Second, Workers: 4}
}

// Limits on command-line values, so a typo cannot wedge the guest.
const (
	maxWorkers  = 256
	maxDuration = time.Hour
)

// parseCmdline reads the ktstr.* options out of a kernel command line.
// Options it does not know are an error, so a typo is reported rather
// than silently ignored; other kernel parameters are left alone.
func parseCmdline(cmdline string) (config, error) {
	c := defaultConfig()
	for _, f := range strings.Fields(cmdline) {
		key, val, _ := strings.Cut(f, "=")
		name, ok := strings.CutPrefix(key, "ktstr.")
		if !ok {
			continue
		}
		switch name {
		case "scenario":
			if val == "" {
				return c, fmt.Errorf("ktstr.scenario is empty")
			}
			c.Scenario = val
		case "duration":
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 || d > maxDuration {
				return c, fmt.Errorf("ktstr.duration=%q: want a positive Go duration up to %v", val, maxDuration)
			}
			c.Duration = d
		case "workers":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > maxWorkers {
				return c, fmt.Errorf("ktstr.workers=%q: want 1 to %d", val, maxWorkers)
			}
			c.Workers = n
		case "scheduler":
			if !strings.HasPrefix(val, "/") {
				return c, fmt.Errorf("ktstr.scheduler=%q: want an absolute path inside the guest", val)
			}
			c.Scheduler = val
		default:
			return c, fmt.Errorf("unknown kernel command-line option %s", key)
		}
	}
	return c, nil
}
