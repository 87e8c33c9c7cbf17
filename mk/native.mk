# The native backend's Linux boot (vmm/kvm).
#
#   make native-smoke   boot the default kernel (`ktstr kernel path`, fetched
#                       if missing) on our own KVM VMM, record the steady
#                       scenario to out/native-smoke.zst and replay it.
#   make native-probe   only the check native-smoke starts with.
#
# A Linux guest needs KVM that runs guest code natively. The probe
# (vmm/kvm/cmd/kvmprobe) times a tiny guest loop first; where KVM is
# missing, or only runs guests in the kernel's instruction emulator, it
# prints why and exits 3, before anything is built (make then reports
# "Error 3" and itself exits 2). There, use QEMU: make demo.
#
# The freestanding test guest runs under the native backend everywhere
# /dev/kvm exists, emulator or not (go test ./vmm/kvm ./cmd/ktstr).

NATIVE_TRACE    ?= out/native-smoke.zst
NATIVE_DURATION ?= 2s

.PHONY: native-probe native-smoke

native-probe:
	@$(GO) build -o $(BIN)/kvmprobe ./vmm/kvm/cmd/kvmprobe
	@$(BIN)/kvmprobe

native-smoke: native-probe build
	@$(BIN)/ktstr kernel path >/dev/null 2>&1 || $(BIN)/ktstr kernel fetch
	@mkdir -p $(dir $(NATIVE_TRACE))
	$(BIN)/ktstr record --backend native --kernel "$$($(BIN)/ktstr kernel path)" --scenario steady \
		--duration $(NATIVE_DURATION) --agent $(BIN)/ktstr-init --force -o $(NATIVE_TRACE)
	$(BIN)/ktstr replay $(NATIVE_TRACE)
