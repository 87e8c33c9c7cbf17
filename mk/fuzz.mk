# Native Go fuzzing (docs/fuzzing.md).
#
#   make fuzz              every fuzz target of ./fuzz, then FUZZ_EXTRA (capture, dispatch), FUZZTIME each
#   make fuzz-smoke        the same, FUZZSMOKE (100000) executions each (CI)
#   make fuzz-brokengate   proof that fuzzing finds a real gate bug: BROKENGATE_TARGET
#                          (FuzzDispatch) built with the deliberately broken SNRQ gate, from the
#                          checked-in corpus less the entries that already expose the bug, must
#                          fail within BROKENGATE_TIME (60s); prints how long it took.
#                          BROKENGATE_CORPUS=empty starts from nothing instead.
#   make fuzz-rate         FuzzDispatch's executions per second on one worker, against
#                          FuzzBaseline (same package, does nothing: the engine's own
#                          ceiling) run the same way just before; FUZZRATE_TIME each
#   make corpus            re-export the checked-in traces as FuzzDispatch corpus files

.PHONY: fuzz fuzz-smoke fuzz-rate fuzz-brokengate corpus

# How long go test may minimize an input that widened coverage (or failed).
# go test's default, 60s, stops execution counting meanwhile: measured
# here, FuzzDispatch ran 34,204 inputs in its first 3 s of a 60 s run and
# none in the other 57 s. 1000 executions keep the corpus entries
# smaller at a fraction of a second each; FUZZMINIMIZETIME=60s restores
# go test's behaviour (worth it when shrinking a failure to read).
FUZZMINIMIZETIME ?= 1000x

# Fuzz targets outside ./fuzz/... that `make fuzz` runs too, as package:Target.
FUZZ_EXTRA ?= ./capture:FuzzReader ./dispatch:FuzzSessionPastBudget ./kernel:FuzzEmbeddedConfig ./vmm:FuzzConsoleLog

# The targets of ./fuzz/... are listed by `go test -list`, so a new one
# is fuzzed without editing this file; FuzzBaseline, the reference of
# fuzz-rate, is left out. Every target runs even when one fails (a
# failure leaves its input under the package's testdata/fuzz/); the
# failures are listed at the end.
fuzz:
	@targets=$$(for pkg in $$($(GO) list ./fuzz/...); do \
		$(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' | grep -vx FuzzBaseline | sed "s|^|$$pkg:|"; done); \
	[ -n "$$targets" ] || { echo "fuzz: no fuzz targets listed in ./fuzz/... (does it build?)"; exit 1; }; \
	failed=; for pt in $$targets $(FUZZ_EXTRA); do \
		pkg=$${pt%%:*}; t=$${pt#*:}; \
		echo "== $$t ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: FAILED:$$failed"; exit 1; fi; \
	echo "fuzz: every target ran $(FUZZTIME) without a failure"

# The smoke counts executions instead of timing them: a duration-based
# -fuzztime can end in a spurious "context deadline exceeded" failure
# with no failing input, a race in Go 1.26's fuzzing coordinator
# (go.dev/issue/75804, fixed in Go 1.27) that CI hit on FuzzReader.
# 100000 executions took 4-17 s a target on 2 cores (79 s in all).
FUZZSMOKE ?= 100000x
fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZSMOKE)

FUZZRATE_TIME ?= 30s
fuzz-rate:
	$(GO) run ./tools/fuzzrate -time $(FUZZRATE_TIME) ./fuzz FuzzBaseline FuzzDispatch FuzzAssembler FuzzPayloads

# fuzz-brokengate runs the test binary of BROKENGATE_PKG (./fuzz; ./fuzz/frames
# for FuzzFrames) in a directory of its own
# (out/fuzz-brokengate/pkg, whose testdata/ it reads) with
# KTSTR_FUZZ_NOSEEDS=1 (no f.Add seeds, which include torn SNRQs on
# purpose) and a fresh fuzz cache. Its corpus is the checked-in testdata of the target less every
# entry that already fails in the broken build, so the fuzzer has to
# tear a well-formed SNRQ itself (BROKENGATE_CORPUS=empty: no corpus at
# all). Both binaries are built before the clock starts (-fuzz on -c
# builds with coverage instrumentation, as go test -fuzz does). It
# succeeds when the fuzzer reports an invariant violation within
# BROKENGATE_TIME and the input it wrote passes in the normal build,
# which shows the failure is the broken gate's.
BROKENGATE_TARGET ?= FuzzDispatch
BROKENGATE_PKG    ?= ./fuzz
BROKENGATE_TIME   ?= 60s
BROKENGATE_CORPUS ?= checked-in
BROKENGATE_DIR     = out/fuzz-brokengate

fuzz-brokengate:
	@rm -rf $(BROKENGATE_DIR) && mkdir -p $(BROKENGATE_DIR)/pkg $(BROKENGATE_DIR)/cache
	@$(GO) test -c -fuzz '^$(BROKENGATE_TARGET)$$' -tags ktstr_brokengate -o $(BROKENGATE_DIR)/broken.test $(BROKENGATE_PKG)
	@$(GO) test -c -o $(BROKENGATE_DIR)/normal.test $(BROKENGATE_PKG)
	@mkdir -p $(BROKENGATE_DIR)/pkg/testdata/fuzz/$(BROKENGATE_TARGET)
	@if [ "$(BROKENGATE_CORPUS)" != empty ]; then \
		kept=0; dropped=0; for f in $(BROKENGATE_PKG)/testdata/fuzz/$(BROKENGATE_TARGET)/*; do \
			[ -f "$$f" ] || continue; n=$$(basename $$f); \
			cp $$f $(BROKENGATE_DIR)/pkg/testdata/fuzz/$(BROKENGATE_TARGET)/; \
			if (cd $(BROKENGATE_DIR)/pkg && KTSTR_FUZZ_NOSEEDS=1 ../broken.test -test.run "^$(BROKENGATE_TARGET)/$$n\$$" >/dev/null 2>&1); \
			then kept=$$((kept+1)); else dropped=$$((dropped+1)); rm $(BROKENGATE_DIR)/pkg/testdata/fuzz/$(BROKENGATE_TARGET)/$$n; fi; \
		done; \
		echo "fuzz-brokengate: $(BROKENGATE_TARGET) with the broken SNRQ gate, from $$kept checked-in corpus entries ($$dropped that already expose the bug left out; no seeds, fresh cache), up to $(BROKENGATE_TIME)"; \
	else \
		echo "fuzz-brokengate: $(BROKENGATE_TARGET) with the broken SNRQ gate, from an empty corpus (no seeds, no testdata, no cache), up to $(BROKENGATE_TIME)"; \
	fi
	@cd $(BROKENGATE_DIR)/pkg && start=$$(date +%s%N); \
	KTSTR_FUZZ_NOSEEDS=1 ../broken.test -test.run '^$$' -test.fuzz '^$(BROKENGATE_TARGET)$$' \
		-test.fuzztime $(BROKENGATE_TIME) -test.fuzzminimizetime 10s -test.timeout 10m \
		-test.fuzzcachedir $(CURDIR)/$(BROKENGATE_DIR)/cache > ../fuzz.log 2>&1; rc=$$?; \
	ms=$$(( ($$(date +%s%N) - start) / 1000000 )); \
	found=$$(sed -n 's|.*Failing input written to testdata/fuzz/$(BROKENGATE_TARGET)/\([0-9a-f]*\).*|\1|p' ../fuzz.log | head -1); \
	if [ $$rc -eq 0 ] || [ -z "$$found" ] || ! grep -q 'invariant ' ../fuzz.log; then \
		echo "fuzz-brokengate: FAILED: $(BROKENGATE_TARGET) did not find the broken gate in $(BROKENGATE_TIME) ($$ms ms wall); last lines of $(BROKENGATE_DIR)/fuzz.log:"; \
		tail -4 ../fuzz.log | sed 's/^/    /'; exit 1; \
	fi; \
	took=$$(sed -n 's/^--- FAIL: $(BROKENGATE_TARGET) (\(.*\))$$/\1/p' ../fuzz.log | head -1); \
	echo "fuzz-brokengate: found: the fuzzer stopped after $${took:-?} ($$ms ms wall, a minimization of at most 10 s included); input $(BROKENGATE_DIR)/pkg/testdata/fuzz/$(BROKENGATE_TARGET)/$$found"; \
	grep -m3 'invariant ' ../fuzz.log | sed 's/^ */    /' | cut -c1-200; \
	if ! KTSTR_FUZZ_NOSEEDS=1 ../normal.test -test.run "^$(BROKENGATE_TARGET)/$$found\$$" > ../normal.log 2>&1; then \
		echo "fuzz-brokengate: FAILED: the input fails the normal build too, so it is a real bug, not the broken gate:"; \
		tail -20 ../normal.log; exit 1; \
	fi; \
	echo "fuzz-brokengate: the same input passes the normal build: the failure is the broken gate's"

# Every checked-in trace exported as a FuzzDispatch corpus file (named
# by content hash, so re-exporting changes nothing and files the fuzzer
# saved there stay). corpus/real may be absent.
corpus:
	$(GO) run ./cmd/ktstr corpus export $(wildcard corpus/seeds/*.zst corpus/real/*.zst) -o fuzz/testdata/fuzz/FuzzDispatch
