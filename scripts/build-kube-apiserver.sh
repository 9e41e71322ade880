#!/usr/bin/env bash
# Build a genuine kube-apiserver (v1.20.2) offline from Debian's own "kubernetes" source package,
# for expctl's integration tests. Only apt is used: the source package (full upstream tree with
# vendor/), golang-go, and one Debian Go library for a vendored-dependency fix.
#
# usage: scripts/build-kube-apiserver.sh [OUTDIR]
#   OUTDIR defaults to ${XDG_CACHE_HOME:-~/.cache}/expctl/kube-v1.20.2. Reruns are no-ops once the
#   binary exists. Cold build on 2 cores: about 4 minutes, ~3 GB of scratch disk (removed afterwards).
#
# Two fixes are applied to the vendored tree because Debian's Go is newer than the Go 1.15 that
# Kubernetes 1.20 was released with:
#   1. github.com/modern-go/reflect2 1.0.1 -> 1.0.2 (Debian's golang-github-modern-go-reflect2-dev);
#      without it the apiserver crashes with SIGSEGV in mapiterinit while serving CRDs.
#   2. the upstream fix for kubernetes#99804 in go-openapi/validate and kube-openapi's type.go;
#      without it every "" string in a custom resource default is rejected as null.
set -euo pipefail
OUT=$(realpath -m "${1:-${XDG_CACHE_HOME:-$HOME/.cache}/expctl/kube-v1.20.2}")
if [ -x "$OUT/kube-apiserver" ]; then "$OUT/kube-apiserver" --version; exit 0; fi
W=$(mktemp -d "${TMPDIR:-/tmp}/expctl-kube-build.XXXXXX")
trap 'rm -rf "$W"' EXIT
mkdir -p "$OUT"; cd "$W"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq golang-go rsync make openssl etcd-server curl >/dev/null
# a private apt configuration with deb-src entries made from this machine's own apt sources
mkdir -p apt/sources.d apt/lists/partial apt/cache/archives/partial
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && sed 's/^Types: deb$/Types: deb-src/' "$f" > "apt/sources.d/src-$(basename "$f")"
done
sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list > apt/sources.list 2>/dev/null || : > apt/sources.list
O=(-o "Dir::Etc::sourcelist=$W/apt/sources.list" -o "Dir::Etc::sourceparts=$W/apt/sources.d"
   -o "Dir::State::Lists=$W/apt/lists" -o "Dir::Cache=$W/apt/cache")
apt-get "${O[@]}" update -qq >/dev/null
apt-get "${O[@]}" source --download-only kubernetes=1.20.5+really1.20.2-1.1+deb12u1 >/dev/null
apt-get download golang-github-modern-go-reflect2-dev >/dev/null
tar xzf kubernetes_1.20.5+really1.20.2.orig.tar.gz
dpkg -x golang-github-modern-go-reflect2-dev_*_all.deb reflect2deb
V=kubernetes-1.20.2/vendor/github.com/modern-go/reflect2
find "$V" -maxdepth 1 -type f ! -name LICENSE -delete
cp reflect2deb/usr/share/gocode/src/github.com/modern-go/reflect2/*.go \
   reflect2deb/usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$V/"
rm -f "$V"/*_test.go
for f in kubernetes-1.20.2/vendor/github.com/go-openapi/validate/type.go \
         kubernetes-1.20.2/vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go; do
  sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' "$f"
  grep -q 'if data == nil {$' "$f"
done
cd kubernetes-1.20.2
export HOME=$W/home GOPROXY=off CGO_ENABLED=0 KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_TREE_STATE=clean \
       KUBE_GIT_COMMIT=0000000000000000000000000000000000000000
unset GOPATH
make WHAT="cmd/kube-apiserver" >/dev/null
cp _output/bin/kube-apiserver "$OUT/kube-apiserver.tmp" && mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
"$OUT/kube-apiserver" --version
