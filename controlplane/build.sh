#!/usr/bin/env bash
# Build kube-apiserver, etcd and helm from the pinned Go modules in this folder, once per machine.
#
# The binaries go to ${XDG_CACHE_HOME:-$HOME/.cache}/mlrollouts/controlplane/<hash of go.mod, go.sum, this
# script and the Go version>/bin, outside any venv, and `current` there points at the last complete build.
# A second run finds them and returns in well under a second. Where Go is missing or the build fails this
# prints one line and exits 0: `mlrollouts apiserver` then falls back to the emulator.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${XDG_CACHE_HOME:-$HOME/.cache}/mlrollouts/controlplane"

if ! command -v go >/dev/null 2>&1; then
	echo "control plane: Go not found, skipping the real kube-apiserver build (the API-server emulator is used)"
	exit 0
fi

# Bump when the build flags below change: the cache key is go.mod, go.sum, the Go version and this.
recipe=2
hash="$(cat "$here/go.mod" "$here/go.sum" <(go version) <(echo "$recipe") | sha256sum | cut -c1-16)"
dir="$root/$hash"
built() {
	if [ -x "$dir/bin/kube-apiserver" ] && [ -x "$dir/bin/etcd" ] && [ -x "$dir/bin/helm" ]; then
		ln -sfn "$hash" "$root/current"
		echo "control plane: built ($dir/bin)"
		exit 0
	fi
}
built
# One build at a time per machine (worktrees share the cache): a second `make install` waits, then finds it.
mkdir -p "$root"
exec 9>"$root/.lock"
if command -v flock >/dev/null && ! flock -n 9; then
	echo "control plane: another build is running, waiting for it"
	flock 9
	built
fi

# Only the module proxy configured on this machine (its `direct` fallback dropped: no VCS access), the
# machine's own Go (no toolchain download) and the committed go.sum (no edit of go.mod).
proxy="$(go env GOPROXY | tr ',|' '\n\n' | grep -v -x -e direct -e off | paste -sd, -)"
export GOPROXY="${proxy:-off}" GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false -trimpath"
k8s="$(cd "$here" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
helmv="$(cd "$here" && go list -m -f '{{.Version}}' helm.sh/helm/v3)"
minor="${k8s#v1.}"
minor="${minor%%.*}"
ldk="-s -w -X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1"
ldk="$ldk -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
ldh="-s -w -X helm.sh/helm/v3/internal/version.version=$helmv"

log="$root/build-$hash.log"
stage="$(mktemp -d "$root/.build-XXXXXX")"
trap 'rm -rf "$stage"' EXIT
echo "control plane: building kube-apiserver $k8s, etcd and helm $helmv from Go modules, once per machine" \
	"(10-30 min on 2 cores the first time; log: $log)"
start=$SECONDS
build() { # name, package, ldflags; a line a minute while go is silent
	echo "control plane: building $1 ($((SECONDS - start)) s so far)"
	(
		trap 'kill "$nap" 2>/dev/null; exit 0' TERM # no sleep left holding stdout open
		while :; do
			sleep 60 &
			nap=$!
			wait "$nap"
			echo "control plane: still building $1 ($((SECONDS - start)) s so far)"
		done
	) &
	local ticker=$! status=0
	(cd "$here" && go build -ldflags "$3" -o "$stage/$1" "$2") >>"$log" 2>&1 || status=$?
	kill "$ticker" 2>/dev/null
	wait "$ticker" 2>/dev/null
	return "$status"
}
if build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ldk" &&
	build etcd ./cmd/etcd "-s -w" &&
	build helm helm.sh/helm/v3/cmd/helm "$ldh"; then
	chmod 755 "$stage" && mkdir -p "$dir" && rm -rf "$dir/bin" && mv "$stage" "$dir/bin" && trap - EXIT
	printf 'kubernetes=%s\nhelm=%s\n' "$k8s" "$helmv" >"$dir/bin/VERSIONS"
	ln -sfn "$hash" "$root/current"
	echo "control plane: built in $((SECONDS - start)) s ($dir/bin)"
else
	echo "control plane: build failed after $((SECONDS - start)) s, the API-server emulator stays in use" \
		"(last lines of $log:)"
	tail -n 5 "$log" | sed 's/^/  /'
fi
exit 0
