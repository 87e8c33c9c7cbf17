# A hostile guest's flood, measured through `ktstr record` (docs/protocol.md,
# the budgets):
#
#   make bench-flood   record the flood and flood-mixed scenarios under QEMU
#                      (FLOOD_ROUNDS rounds, 5 s of flood each) and print the
#                      frames per second the guest sustained into the recorder
#                      (target >= 5 M/s for flood), the recorder's peak RSS
#                      (bound 256 MiB) and how long after the flood the run
#                      ended (bound 2 s). Skips with a reason without QEMU or
#                      a kernel.

FLOOD_ROUNDS ?= 1

.PHONY: bench-flood
bench-flood:
	$(GO) test -run '^$$' -bench 'Flood' -benchtime=$(FLOOD_ROUNDS)x -timeout 30m ./e2e

# ktstr soak's parallelism on this host: runs per minute with -j 2
# against -j 1 (BenchmarkSoak, 6 runs of steady on 1 vCPU each side).
.PHONY: bench-soak
bench-soak:
	$(GO) test -run '^$$' -bench 'Soak' -benchtime=1x -timeout 30m ./e2e
