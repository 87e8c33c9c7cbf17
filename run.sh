#!/usr/bin/env bash
# run.sh — the two commands of the README, with every install step inside.
#
#   ./run.sh demo    install what is missing, record a real run under QEMU, replay it
#   ./run.sh test    install what is missing, run every test (make test)
#   ./run.sh TARGET  any other make target, after the same installs
#
# On a fresh Debian 12 machine it apt-gets make, gcc, git, curl, zstd and
# QEMU (with sudo when not root), and when no Go of the version go.mod
# names is on PATH it downloads that toolchain from the Go module proxy
# into ~/.cache/ktstr/go. For demo and test it fetches Debian's cloud
# kernel (`ktstr kernel fetch`: apt-get download into ~/.cache/ktstr).
set -euo pipefail
cd "$(dirname "$0")"

target=${1:-demo}
shift || true

sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)

need=()
for p in make:make gcc:gcc git:git curl:curl unzip:unzip zstd:zstd qemu-system-x86_64:qemu-system-x86; do
	command -v "${p%%:*}" >/dev/null || need+=("${p#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "run.sh: installing ${need[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Go: the version go.mod asks for, or newer.
want=$(sed -n 's/^go \([0-9.]*\)$/\1/p' go.mod)
have=$(go env GOVERSION 2>/dev/null | sed 's/^go//' || true)
if [ -z "$have" ] || [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" != "$want" ]; then
	root="${XDG_CACHE_HOME:-$HOME/.cache}/ktstr/go$want"
	if [ ! -x "$root/bin/go" ]; then
		echo "run.sh: fetching Go $want from the Go module proxy into $root" >&2
		tmp=$(mktemp -d)
		curl -fsSL -o "$tmp/go.zip" "https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go$want.linux-amd64.zip"
		unzip -q "$tmp/go.zip" -d "$tmp"
		mkdir -p "$(dirname "$root")"
		rm -rf "$root"
		mv "$tmp/golang.org/toolchain@v0.0.1-go$want.linux-amd64" "$root"
		rm -rf "$tmp"
	fi
	export PATH="$root/bin:$PATH"
fi

# The default kernel for real runs (demo, and the end-to-end tests).
case "$target" in
demo | test)
	go run ./cmd/ktstr kernel path >/dev/null 2>&1 || go run ./cmd/ktstr kernel fetch
	;;
esac

exec make "$target" "$@"
