#!/usr/bin/env bash
# A Debian directory root for tests that need a whole system (package install, Slurm labs):
#   root.sh SUITE DIR        make DIR a fresh copy of a minimal SUITE root (e.g. bookworm)
# The minimal root is built once with debootstrap (--variant=minbase) from the Debian mirror
# this machine's apt already uses (read from /etc/apt/sources.list*; no host name is written
# here) and cached as a tarball under $AW_ROOTS_CACHE (default ~/.cache/allocwatch/roots), so
# later runs only unpack it. Needs root (debootstrap, chroot). Output on stderr; prints DIR.
set -euo pipefail
suite=${1:?usage: root.sh SUITE DIR}
dir=${2:?usage: root.sh SUITE DIR}
cache=${AW_ROOTS_CACHE:-$HOME/.cache/allocwatch/roots}
tarball="$cache/$suite-minbase.tar"

# The first `deb` URI of the main archive in apt's configuration (deb822 .sources or one-line
# lists), whatever mirror or proxy the machine is set up with.
mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    uri=$(awk 'BEGIN{IGNORECASE=1} /^URIs:/ {for (i = 2; i <= NF; i++) if ($i !~ /security/) {print $i; exit}}' "$f")
    [[ -n $uri ]] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { if ($i !~ /security/) print $i; exit } }' "$f")
    [[ -n $uri ]] && { echo "$uri"; return; }
  done
  echo "root.sh: no deb URI in /etc/apt/sources.list*" >&2
  return 1
}

if [[ ! -s $tarball ]]; then
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends debootstrap >&2 \
    || { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update >&2 && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends debootstrap >&2; }
  mkdir -p "$cache"
  build=$(mktemp -d "$cache/.build-$suite.XXXXXX")
  trap 'rm -rf "$build"' EXIT
  url=$(mirror)
  t0=$(date +%s)
  echo "root.sh: debootstrap --variant=minbase $suite (mirror from apt's configuration)" >&2
  if ! debootstrap --variant=minbase "$suite" "$build/root" "$url" >"$build/log" 2>&1; then
    tail -30 "$build/log" >&2
    [[ -f $build/root/debootstrap/debootstrap.log ]] && tail -30 "$build/root/debootstrap/debootstrap.log" >&2
    echo "root.sh: debootstrap of $suite failed" >&2
    exit 1
  fi
  rm -rf "$build/root/var/cache/apt/archives/"*.deb "$build/root/var/lib/apt/lists/"*
  tar -C "$build/root" -cf "$build/root.tar" .
  mv "$build/root.tar" "$tarball"
  echo "root.sh: $suite root built in $(( $(date +%s) - t0 )) s, cached as $tarball" >&2
fi

rm -rf "$dir"
mkdir -p "$dir"
tar -C "$dir" -xf "$tarball"
echo "$dir"
