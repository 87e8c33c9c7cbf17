# Native Go fuzzing (docs/fuzzing.md).
#
#   make fuzz              every fuzz target in turn, FUZZTIME each (default 60s)
#   make fuzz-smoke        the same, 10 s each (CI)
#   make fuzz-brokengate   proof that fuzzing finds real bugs: FuzzDispatch, built
#                          with the deliberately broken SNRQ gate and started from
#                          the checked-in corpus (less the entries that already
#                          expose it), must fail within 60 s; prints how long it took
#   make corpus            re-export the checked-in traces as FuzzDispatch corpus files

# package:target pairs, in the order they run.
FUZZ_TARGETS ?= \
	./fuzz:FuzzDispatch ./fuzz:FuzzAssembler ./fuzz:FuzzFrames ./fuzz:FuzzTraceReader \
	./fuzz:FuzzPayloads ./fuzz:FuzzVirtqueue ./fuzz:FuzzConsoleRegisters ./capture:FuzzReader

.PHONY: fuzz fuzz-smoke fuzz-brokengate corpus

fuzz:
	@set -e; for pt in $(FUZZ_TARGETS); do \
		pkg=$${pt%%:*}; t=$${pt#*:}; \
		echo "== $$t ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=10s

BROKEN_DIR = out/fuzz-brokengate
fuzz-brokengate:
	@rm -rf $(BROKEN_DIR) && mkdir -p $(BROKEN_DIR)/pkg/testdata/fuzz/FuzzDispatch
	@cp fuzz/*.go $(BROKEN_DIR)/pkg/
	@$(GO) test -c -tags ktstr_brokengate -o $(BROKEN_DIR)/fuzz.test ./$(BROKEN_DIR)/pkg
	@# The starting corpus: the checked-in FuzzDispatch corpus minus the
	@# entries that already expose the broken gate (torn SNRQs recorded on
	@# purpose), so the fuzzer has to make a torn SNRQ itself.
	@kept=0; dropped=0; for f in fuzz/testdata/fuzz/FuzzDispatch/*; do 		cp $$f $(BROKEN_DIR)/pkg/testdata/fuzz/FuzzDispatch/; 		if (cd $(BROKEN_DIR)/pkg && KTSTR_FUZZ_NOSEEDS=1 ../fuzz.test -test.run "^FuzzDispatch/$$(basename $$f)\$$" >/dev/null 2>&1); 		then kept=$$((kept+1)); else dropped=$$((dropped+1)); rm $(BROKEN_DIR)/pkg/testdata/fuzz/FuzzDispatch/$$(basename $$f); fi; 	done; 	echo "fuzz-brokengate: FuzzDispatch built with the broken SNRQ gate; corpus: $$kept checked-in entries ($$dropped that already expose it left out); up to 60 s"
	@cd $(BROKEN_DIR)/pkg && start=$$(date +%s%N); 	if KTSTR_FUZZ_NOSEEDS=1 ../fuzz.test -test.run '^$$' -test.fuzz '^FuzzDispatch$$' -test.fuzztime 60s \
		-test.fuzzcachedir $(CURDIR)/$(BROKEN_DIR)/cache > ../log 2>&1; then \
		echo "fuzz-brokengate: FuzzDispatch did NOT find the broken gate in 60 s"; tail -5 ../log; exit 1; \
	fi; \
	end=$$(date +%s%N); \
	grep -q 'invariant violation' ../log || { echo "fuzz-brokengate: FuzzDispatch stopped without finding it:"; tail -5 ../log; exit 1; }; \
	echo "fuzz-brokengate: found after $$(( (end - start) / 1000000 )) ms of fuzzing:"; \
	grep -m1 -A2 'invariant violation' ../log | sed 's/^/    /'

corpus:
	$(GO) run ./cmd/ktstr corpus export $(wildcard corpus/seeds/*.zst corpus/real/*.zst) -o fuzz/testdata/fuzz/FuzzDispatch
