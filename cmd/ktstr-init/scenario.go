package main

import (
	"context"
	"fmt"
	"sort"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// scenario is one workload the agent can run, chosen with
// ktstr.scenario=NAME. run returns the status for the EXIT frame; an
// error is also reported to the host as SERR.
type scenario struct {
	name string
	help string
	// ownsScheduler says the scenario starts the scheduler itself
	// (ktstr.scheduler or a stand-in) rather than leaving that to the
	// runner.
	ownsScheduler bool
	run           func(ctx context.Context, a *agent) (int, error)
}

// builtinScenarios lists the scenarios compiled into the agent. A new
// scenario lives in its own file and adds its constructor here.
func builtinScenarios() []scenario {
	return []scenario{
		steadyScenario(),
		schedExitScenario(),
		snapshotScenario(),
		hostileScenario(),
		crashScenario(),
		schedExtScenario(),
		throughputScenario(),
		floodScenario(),
		floodMixedScenario(),
		consoleFloodScenario(),
		stallScenario(),
	}
}

// registry finds scenarios by name. It is built once in main from
// builtinScenarios and passed down; nothing registers itself globally.
type registry map[string]scenario

func newRegistry(scens []scenario) (registry, error) {
	r := make(registry, len(scens))
	for _, s := range scens {
		if _, dup := r[s.name]; dup {
			return nil, fmt.Errorf("scenario %s is defined twice", s.name)
		}
		r[s.name] = s
	}
	return r, nil
}

func (r registry) lookup(name string) (scenario, bool) {
	s, ok := r[name]
	return s, ok
}

func (r registry) names() []string {
	n := make([]string, 0, len(r))
	for k := range r {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// crashScenario panics on purpose, to show that a panic in the agent
// reaches the host as CRSH.
func crashScenario() scenario {
	return scenario{
		name: "crash",
		help: "panic in the agent (the host sees CRSH)",
		run: func(ctx context.Context, a *agent) (int, error) {
			if err := a.sendJSON(wire.Scenario, map[string]any{"scenario": "crash", "phase": "begin"}); err != nil {
				return 1, err
			}
			panic("deliberate panic (ktstr.scenario=crash)")
		},
	}
}
