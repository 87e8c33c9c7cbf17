# The native backend's Linux boot (vmm/kvm).
#
#   make native-smoke   boot the default kernel on our own KVM VMM, record the
#                       steady scenario to out/native-smoke.zst and replay it.
#                       It needs KVM that runs guest code natively: where the
#                       probe (vmm/kvm/cmd/kvmprobe) finds KVM missing or only
#                       emulating, it says so and the recipe exits 3 (make
#                       then reports "Error 3" and exits 2).
#
# The freestanding test guest runs under the native backend everywhere
# /dev/kvm exists (go test ./vmm/kvm ./cmd/ktstr).

NATIVE_TRACE ?= out/native-smoke.zst

.PHONY: native-smoke
native-smoke: build
	@$(GO) build -o $(BIN)/kvmprobe ./vmm/kvm/cmd/kvmprobe
	@$(BIN)/kvmprobe
	@mkdir -p $(dir $(NATIVE_TRACE))
	$(BIN)/ktstr record --backend native --scenario steady --agent $(BIN)/ktstr-init --force -o $(NATIVE_TRACE)
	$(BIN)/ktstr replay $(NATIVE_TRACE)
