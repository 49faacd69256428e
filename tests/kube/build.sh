#!/usr/bin/env bash
# Build a real Kubernetes 1.20.2 control plane (kube-apiserver, kube-controller-manager, kube-scheduler)
# from Debian bookworm's `kubernetes` source package, and unpack etcd from the `etcd-server` .deb.
# Only the Debian registry is used; the system's apt sources are not changed and no service is registered.
#
# Output: $ADAPTIVE_DASK_KUBE_BIN (default ~/.cache/adaptive-dask/kube-1.20.2/bin) holding
#         etcd, kube-apiserver, kube-controller-manager, kube-scheduler.
# If KUBEBUILDER_ASSETS names a folder that already has those binaries (envtest convention), it is used as is.
# Idempotent: when every binary is present, it prints the folder and exits at once.
set -euo pipefail
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler)
WORK=${ADAPTIVE_DASK_KUBE_CACHE:-$HOME/.cache/adaptive-dask/kube-1.20.2}
BIN=${ADAPTIVE_DASK_KUBE_BIN:-$WORK/bin}
KVER=1.20.5+really1.20.2-1.1+deb12u1
KSRC=kubernetes-1.20.5+really1.20.2

have_all() { local d=$1 b; for b in "${BINARIES[@]}"; do [ -x "$d/$b" ] || return 1; done; }
if [ -n "${KUBEBUILDER_ASSETS:-}" ] && have_all "$KUBEBUILDER_ASSETS"; then echo "$KUBEBUILDER_ASSETS"; exit 0; fi
if have_all "$BIN"; then echo "$BIN"; exit 0; fi

if ! command -v apt-get >/dev/null || ! grep -q bookworm /etc/os-release 2>/dev/null; then
  echo "build.sh: needs Debian bookworm with apt-get; or set KUBEBUILDER_ASSETS to a folder holding ${BINARIES[*]}" >&2
  exit 2
fi
t() { local s=$SECONDS; "$@"; echo "build.sh: $1 ... took $((SECONDS - s))s" >&2; }
mkdir -p "$WORK"/apt/{parts,lists/partial,cache/archives/partial} "$BIN" "$WORK/src"

# 1. Private apt lists with deb-src entries, kept under $WORK (system sources untouched).
cp /etc/apt/sources.list.d/debian.sources "$WORK/apt/parts/"
sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$WORK/apt/parts/debian-src.sources"
APT=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$WORK/apt/parts"
     -o Dir::State::Lists="$WORK/apt/lists" -o Dir::Cache="$WORK/apt/cache"
     -o APT::Sandbox::User=root)  # our private folders are root's; the _apt sandbox user cannot write them
t apt-get -qq "${APT[@]}" update

# 2. Go 1.19 and rsync (Build-Depends) from bookworm; plain package installs, no services.
if ! command -v go >/dev/null || ! command -v rsync >/dev/null; then
  apt-get -qq update >/dev/null
  t env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends golang-go rsync >/dev/null
fi

cd "$WORK/src"
# 3. etcd: unpack the .deb instead of installing it, so no service is registered.
if [ ! -x "$BIN/etcd" ]; then
  rm -rf etcd-root etcd-server_*.deb
  t apt-get -qq "${APT[@]}" download etcd-server
  t dpkg-deb -x etcd-server_*.deb etcd-root
  cp etcd-root/usr/bin/etcd "$BIN/etcd"
fi

# 4. The full Kubernetes 1.20.2 tree (with vendor/) and its own make, GOPATH mode, offline.
if [ ! -d "$KSRC" ]; then
  t apt-get -qq "${APT[@]}" source --download-only "kubernetes=$KVER" 2>/dev/null
  t dpkg-source -q -x "kubernetes_$KVER.dsc"
fi
cd "$KSRC"
export GOPROXY=off CGO_ENABLED=0 GOFLAGS= KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 \
       KUBE_GIT_TREE_STATE=clean KUBE_GIT_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56
t make -s WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" >/dev/null
cp _output/bin/kube-apiserver _output/bin/kube-controller-manager _output/bin/kube-scheduler "$BIN/"
# The Go build cache and the source tree are only needed to rebuild; drop them to save ~2 GB.
rm -rf "$WORK/src/$KSRC/_output/local/go/cache"
have_all "$BIN"
echo "$BIN"
