# Mutation testing of the dispatch core (docs/mutation.md).
#
#   make mutation   run gremlins over dispatch and dispatch/wire, each
#                   against its own package's tests, write the JSON reports
#                   to out/mutation/, and print per package the mutants
#                   killed, lived, timed out and not covered, the efficacy,
#                   the mutant coverage, the killed share (target >= 90 %)
#                   and every surviving mutant; exits 1 below the target
#
# gremlins is a tool, not a dependency of the module: `go run` fetches it
# at a pinned version from the module proxy; nothing is pre-installed.
# It mutates the default build (no build tags), so brokenGate is false as
# in every real build (dispatch/brokengate_off.go).
#
# Two workers at nice 10. GOFLAGS=-count=1 makes the coverage run
# gremlins times (the per-mutant timeout is its duration times
# MUTATION_TIMEOUT_COEFF) a real run, build included, not a cached
# result. A short timeout (3x) keeps mutants that loop from costing
# minutes each; every mutant gremlins reports TIMED OUT is then judged
# again by tools/mutreport with the test binary's own -timeout
# (MUTATION_RERUN_TIMEOUT, build excluded), so a slow build on a busy
# machine does not pass for an endless loop.
#
# gremlins does not run the mutants its coverage profile marks NOT COVERED;
# Go's coverage has no block for a constant declaration or a switch's case
# expressions, so tools/mutreport runs those itself too (through a build
# overlay; the tree is not touched).

GREMLINS               ?= $(GO) run github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0
MUTATION_OUT           ?= out/mutation
MUTATION_WORKERS       ?= 2
MUTATION_TIMEOUT_COEFF ?= 3
MUTATION_MIN           ?= 90
MUTATION_NICE          ?= nice -n 10
MUTATION_RERUN         ?= NOT COVERED,TIMED OUT
MUTATION_RERUN_TIMEOUT ?= 20s

# Every gremlins mutator that applies to this code (invert-loopctrl swaps
# break and continue; invert-bwassign has no target here but costs nothing).
MUTATORS = --arithmetic-base --conditionals-boundary --conditionals-negation \
	--increment-decrement --invert-negatives --invert-logical --invert-bitwise \
	--invert-bwassign --invert-assignments --remove-self-assignments --invert-loopctrl

GREMLINS_UNLEASH = GOFLAGS=-count=1 $(MUTATION_NICE) $(GREMLINS) unleash $(MUTATORS) \
	--workers $(MUTATION_WORKERS) --timeout-coefficient $(MUTATION_TIMEOUT_COEFF)

.PHONY: mutation
mutation:
	@mkdir -p $(MUTATION_OUT)
	$(GREMLINS_UNLEASH) --exclude-files '^wire/' -o $(MUTATION_OUT)/dispatch.json ./dispatch
	$(GREMLINS_UNLEASH) -o $(MUTATION_OUT)/wire.json ./dispatch/wire
	$(MUTATION_NICE) $(GO) run ./tools/mutreport -min $(MUTATION_MIN) \
		-rerun '$(MUTATION_RERUN)' -timeout $(MUTATION_RERUN_TIMEOUT) \
		dispatch=$(MUTATION_OUT)/dispatch.json dispatch/wire=$(MUTATION_OUT)/wire.json
