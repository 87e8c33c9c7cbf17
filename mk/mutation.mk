# Mutation testing of the dispatch core (docs/mutation.md).
#
#   make mutation   run gremlins over dispatch and dispatch/wire with their
#                   own tests, write out/mutation/dispatch.json and print
#                   the killed share and every surviving mutant
#
# gremlins is a tool, not a dependency of the module: it is run at a
# pinned version through `go run`, fetched from the module proxy.

GREMLINS ?= $(GO) run github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0
MUTATION_WORKERS ?= 2

.PHONY: mutation
mutation:
	@mkdir -p out/mutation
	$(GREMLINS) unleash --workers $(MUTATION_WORKERS) --timeout-coefficient 10 \
		--invert-logical --invert-bitwise -o out/mutation/dispatch.json ./dispatch
	$(GO) run ./tools/mutreport out/mutation/dispatch.json
