# sched_ext: build the kernel and the tools/sched_ext schedulers (issue 7).
#
#   make scx          build (or reuse from the cache) a sched_ext kernel from
#                     Debian's linux-source-6.12 and scx_simple & co, static;
#                     apt-gets missing build packages when run as root
#   make scx-path     print where the cached build is (exit 3 if none)
#   make e2e-scx      the sched_ext end-to-end test (fails if not built)
#
# The build runs at the lowest CPU priority (SCX_NICE) so a shared machine
# stays usable; SCX_JOBS sets make's -j (default: one per CPU). Outputs go
# to $XDG_CACHE_HOME/ktstr/kernel-build (default ~/.cache/ktstr), never
# into the repository.

SCX_NICE  ?= 19
SCX_JOBS  ?= $(shell nproc)
SCX_FLAGS ?=

.PHONY: scx scx-path e2e-scx

scx: build
	nice -n $(SCX_NICE) $(BIN)/ktstr kernel build --sched-ext --jobs $(SCX_JOBS) $(SCX_FLAGS)

scx-path: build
	$(BIN)/ktstr kernel build --sched-ext --cached-only

e2e-scx: build
	KTSTR_REQUIRE_SCX=1 $(GO) test -count=1 -run SchedExt -v ./e2e
