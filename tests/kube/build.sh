#!/usr/bin/env bash
# Build a real Kubernetes 1.20.2 control plane (kube-apiserver, kube-controller-manager, kube-scheduler)
# from Debian bookworm's `kubernetes` source package, and unpack etcd from bookworm's `etcd-server` .deb.
# Runs on Debian 12 (bookworm) and Debian 13 (trixie): both read bookworm through a private apt source
# list kept under the cache folder (only bookworm's 1.20.2 source builds the control plane; trixie's
# builds only kubectl and its Go is 1.24). Go 1.19 and etcd are unpacked with `dpkg-deb -x`, never
# installed; the system's apt sources are not changed and no service is registered. Only missing build
# tools (make, rsync, dpkg-dev: plain packages of either release) are installed, which needs root.
#
# Output: $ADAPTIVE_DASK_KUBE_BIN (default ~/.cache/adaptive-dask/kube-1.20.2/bin) holding
#         etcd, kube-apiserver, kube-controller-manager, kube-scheduler.
# If KUBEBUILDER_ASSETS names a folder that already has those binaries (envtest convention), it is used as is.
# Idempotent: when every binary is present, it prints the folder and exits at once.
#
# Usage: build.sh [--plan | --fetch-only]
#   --plan        print the OS decision, the private apt source list and the steps; change nothing
#   --fetch-only  download and unpack Go, etcd and the source tree, check the Go toolchain; no `make`
# For tests: ADAPTIVE_DASK_OS_RELEASE (default /etc/os-release) and ADAPTIVE_DASK_APT_SOURCES (default
# /etc/apt/sources.list.d/debian.sources: the mirror and keyring to reuse) name other files to read.
set -euo pipefail
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler)
WORK=${ADAPTIVE_DASK_KUBE_CACHE:-$HOME/.cache/adaptive-dask/kube-1.20.2}
BIN=${ADAPTIVE_DASK_KUBE_BIN:-$WORK/bin}
OS_RELEASE=${ADAPTIVE_DASK_OS_RELEASE:-/etc/os-release}
SYS_SOURCES=${ADAPTIVE_DASK_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}
SUITE=bookworm  # the release every download comes from, whatever the host runs
SUPPORTED=(bookworm trixie)
KVER=1.20.5+really1.20.2-1.1+deb12u1
KSRC=kubernetes-1.20.5+really1.20.2
DEBS=(golang-1.19-go golang-1.19-src etcd-server)  # -src holds the standard library the -go symlinks to
TOOLS=(make:make rsync:rsync dpkg-source:dpkg-dev)  # command:package, installed from the system's sources
DEFAULT_URI=http://deb.debian.org/debian
DEFAULT_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg  # bookworm's and trixie's hold bookworm keys
GOROOT_DIR=$WORK/go-root/usr/lib/go-1.19
MODE=build
case "${1:-}" in
  --plan) MODE=plan ;;
  --fetch-only) MODE=fetch ;;
  "") ;;
  *) echo "build.sh: unknown option '$1'; allowed: --plan, --fetch-only, or none" >&2; exit 2 ;;
esac

os_field() { sed -n "s/^$1=//p" "$OS_RELEASE" 2>/dev/null | head -n1 | tr -d "\"'"; }

# The host's Debian release if it is one this script supports, else a message and exit 2.
host_codename() {
  local id codename c
  id=$(os_field ID)
  codename=$(os_field VERSION_CODENAME)
  for c in "${SUPPORTED[@]}"; do
    if [ "$id" = debian ] && [ "$codename" = "$c" ]; then echo "$c"; return 0; fi
  done
  echo "build.sh: unsupported OS '$(os_field PRETTY_NAME)' (ID=${id:-?}, VERSION_CODENAME=${codename:-?}) in" \
    "$OS_RELEASE; allowed: Debian ${SUPPORTED[*]}. Elsewhere set KUBEBUILDER_ASSETS to a folder holding" \
    "${BINARIES[*]}" >&2
  return 2
}

# "URI KEYRING" of the host's main Debian archive (the deb822 stanza whose Suites name the host's release),
# so a machine behind its own mirror keeps using it; Debian's defaults when the file says nothing.
mirror() {
  local codename=$1
  awk -v want="$codename" -v uri="$DEFAULT_URI" -v key="$DEFAULT_KEYRING" '
    function flush() { if (!found && hit && u != "") { uri = u; if (k != "") key = k; found = 1 } u = k = ""; hit = 0 }
    /^[[:space:]]*$/ { flush(); next }
    /^URIs:/ { u = $2 }
    /^Signed-By:/ { k = $2 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == want) hit = 1 }
    END { flush(); print uri, key }' "$SYS_SOURCES" 2>/dev/null || echo "$DEFAULT_URI $DEFAULT_KEYRING"
}

private_sources() {  # the only list the build's apt calls read: bookworm main, binaries and sources
  local uri=$1 keyring=$2
  printf 'Types: deb deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' "$uri" "$SUITE" "$keyring"
}

missing_tools() {
  local t
  for t in "${TOOLS[@]}"; do command -v "${t%%:*}" >/dev/null || printf '%s ' "${t#*:}"; done
}

CODENAME=$(host_codename) || exit 2
read -r URI KEYRING < <(mirror "$CODENAME")
if [ "$MODE" = plan ]; then
  echo "host: Debian $CODENAME ($OS_RELEASE)"
  echo "downloads from: $SUITE main at $URI, signed by $KEYRING"
  echo "private sources: $WORK/apt/parts/bookworm.sources"
  private_sources "$URI" "$KEYRING" | sed 's/^/  /'
  echo "steps:"
  echo "  1. apt-get update with the private lists only (system sources untouched)"
  echo "  2. apt-get download ${DEBS[*]}; dpkg-deb -x each (not installed)"
  echo "  3. apt-get source --download-only kubernetes=$KVER; dpkg-source -x"
  echo "  4. make kube-apiserver kube-controller-manager kube-scheduler with GOROOT=$GOROOT_DIR on PATH"
  TODO=$(missing_tools)
  echo "build tools to install from the host's own sources: ${TODO:-none}"
  exit 0
fi

have_all() { local d=$1 b; for b in "${BINARIES[@]}"; do [ -x "$d/$b" ] || return 1; done; }
if [ "$MODE" = build ]; then
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && have_all "$KUBEBUILDER_ASSETS"; then echo "$KUBEBUILDER_ASSETS"; exit 0; fi
  if have_all "$BIN"; then echo "$BIN"; exit 0; fi
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
  echo "build.sh: needs apt-get and dpkg-deb; or set KUBEBUILDER_ASSETS to a folder holding ${BINARIES[*]}" >&2
  exit 2
fi
if [ ! -r "$KEYRING" ]; then
  echo "build.sh: keyring $KEYRING (from $SYS_SOURCES) is missing; install debian-archive-keyring" >&2
  exit 2
fi
t() { local s=$SECONDS; "$@"; echo "build.sh: $1 ... took $((SECONDS - s))s" >&2; }
mkdir -p "$WORK"/apt/{parts,lists/partial,cache/archives/partial} "$BIN" "$WORK/src"

# 0. Build tools the host lacks: plain packages on bookworm and trixie alike.
TODO=$(missing_tools)
if [ -n "$TODO" ]; then
  apt-get -qq update >/dev/null
  # shellcheck disable=SC2086  # a list of package names
  t env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends $TODO >/dev/null
fi

# 1. Private apt lists (bookworm only), kept under $WORK.
rm -f "$WORK"/apt/parts/*.sources  # lists of an older build.sh (the host's suites) would mix releases in
private_sources "$URI" "$KEYRING" > "$WORK/apt/parts/bookworm.sources"
APT=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$WORK/apt/parts"
     -o Dir::State::Lists="$WORK/apt/lists" -o Dir::Cache="$WORK/apt/cache"
     -o APT::Sandbox::User=root)  # our private folders are root's; the _apt sandbox user cannot write them
t apt-get -qq "${APT[@]}" update

cd "$WORK/src"
# 2. Go 1.19 and etcd: unpack the .debs instead of installing them (no service, no system Go changed).
if [ ! -x "$GOROOT_DIR/bin/go" ] || [ ! -x "$BIN/etcd" ]; then
  rm -rf "$WORK/go-root" etcd-root ./*.deb
  t apt-get -qq "${APT[@]}" download "${DEBS[@]}"
  for deb in golang-1.19-go_*.deb golang-1.19-src_*.deb; do dpkg-deb -x "$deb" "$WORK/go-root"; done
  t dpkg-deb -x etcd-server_*.deb etcd-root
  cp etcd-root/usr/bin/etcd "$BIN/etcd"
fi
export GOROOT=$GOROOT_DIR PATH=$GOROOT_DIR/bin:$PATH
echo "build.sh: $(go version) at $GOROOT; $("$BIN/etcd" --version | head -n1)" >&2

# 3. The full Kubernetes 1.20.2 tree (with vendor/) and its own make, GOPATH mode, offline.
if [ ! -d "$KSRC" ]; then
  t apt-get -qq "${APT[@]}" source --download-only "kubernetes=$KVER" 2>/dev/null
  t dpkg-source -q -x "kubernetes_$KVER.dsc"
fi
if [ "$MODE" = fetch ]; then echo "$WORK/src/$KSRC"; exit 0; fi
cd "$KSRC"
export GOPROXY=off CGO_ENABLED=0 GOFLAGS= KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 \
       KUBE_GIT_TREE_STATE=clean KUBE_GIT_COMMIT=faecb196815e248d3ecfb03c680a4507229c2a56
t make -s WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" >/dev/null
cp _output/bin/kube-apiserver _output/bin/kube-controller-manager _output/bin/kube-scheduler "$BIN/"
# The Go build cache and the source tree are only needed to rebuild; drop them to save ~2 GB.
rm -rf "$WORK/src/$KSRC/_output/local/go/cache"
have_all "$BIN"
echo "$BIN"
