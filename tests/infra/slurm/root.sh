#!/usr/bin/env bash
# root.sh RELEASE [CACHE_DIR] -- build (or reuse) a Debian root with a newer Slurm, for
# start.sh --root.  Prints the root's absolute path on stdout, nothing else.
#
#   RELEASE    trixie (Slurm 24.11) or forky (Slurm 26.05); also accepted: 24.11, 26.05
#   CACHE_DIR  where roots are kept: $SLURM_LAB_ROOTS, else /var/cache/allocwatch-slurm-roots.
#              The root is CACHE_DIR/RELEASE.
#
# Reuse: a root is used as it is once CACHE_DIR/RELEASE/.allocwatch-root exists (written
# last).  Build: debootstrap --variant=minbase into CACHE_DIR/.build-RELEASE.PID, install
# the packages inside it (services kept from starting by a policy-rc.d), clean the apt
# cache, then rename it into place: an interrupted build never leaves a half root under
# the final name, and its temp dir is removed by the next run.  Builds of one CACHE_DIR are
# serialised by flock (one lock per release).  Set SLURM_LAB_REBUILD=1 to throw the cached root away and rebuild.
#
# The mirror is read at run time from this machine's apt configuration (the URIs of the
# main Debian archive in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list);
# SLURM_LAB_MIRROR overrides it.  Must run as root.  Timings go to CACHE_DIR/RELEASE.timings.
set -euo pipefail
exec </dev/null
log() { printf '[slurm-root %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
(( EUID == 0 )) || die "root.sh must run as root"

case ${1:-} in
  trixie|24.11) REL=trixie ;;
  forky|26.05)  REL=forky ;;
  *) sed -n '2,18p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
CACHE=${2:-${SLURM_LAB_ROOTS:-/var/cache/allocwatch-slurm-roots}}
mkdir -p "$CACHE"; CACHE=$(cd "$CACHE" && pwd -P)
ROOT=$CACHE/$REL
# munge, mariadb-server, the Slurm daemons, the JWT auth plugin (auth_jwt.so: slurmrestd's
# rest_auth/jwt and AuthAltTypes=auth/jwt) and libfaketime (jobs.sh rollup)
PKGS=(munge mariadb-server slurmctld slurmd slurmdbd slurm-client slurmrestd slurm-wlm-jwt-plugin
      faketime)
USERS=(alice bob slurmrest)        # must match lib.sh's JOB_USERS and REST_USER

[[ ${SLURM_LAB_REBUILD:-0} == 1 ]] || { [[ -e $ROOT/.allocwatch-root ]] && { echo "$ROOT"; exit 0; }; }

exec 9>"$CACHE/.lock-$REL"
flock -w 1800 9 || die "another root.sh holds $CACHE/.lock-$REL"

# Never rm -rf a tree with something mounted below it (a bind of /dev or of a lab dir
# would be emptied through it): unmount first, refuse if that fails.
umount_below() {  # dir
  local m
  for m in $(findmnt -rn -o TARGET | awk -v d="$1" 'index($0, d "/") == 1' | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  ! findmnt -rn -o TARGET | awk -v d="$1" 'index($0, d "/") == 1 { f = 1 } END { exit !f }'
}
safe_rm() {  # dir
  [[ -e $1 ]] || return 0
  umount_below "$1" || die "something is still mounted below $1: not removing it"
  rm -rf --one-file-system -- "$1"
}

# a rebuild must not pull the root from under a running lab (chrooted processes)
root_busy() {
  local p
  for p in /proc/[0-9]*; do [[ $(readlink "$p/root" 2>/dev/null) == "$ROOT" ]] && return 0; done
  return 1
}
[[ -e $ROOT ]] && root_busy && die "a process runs in $ROOT: stop its lab first"

# leftovers of interrupted builds (we hold the lock, so nobody is building now)
for d in "$CACHE"/.build-"$REL".* "$CACHE"/.old-"$REL".*; do [[ -e $d ]] && { log "removing leftover $d"; safe_rm "$d"; }; done
if [[ -e $ROOT/.allocwatch-root && ${SLURM_LAB_REBUILD:-0} != 1 ]]; then echo "$ROOT"; exit 0; fi  # built meanwhile

# ------------------------------------------------------------------ mirror
mirror() {
  [[ -n ${SLURM_LAB_MIRROR:-} ]] && { echo "$SLURM_LAB_MIRROR"; return; }
  local f
  # deb822: the URIs of a stanza whose Suites are not *-security / *-updates / *-backports
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -e $f ]] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
         { uris = ""; suites = ""; types = ""
           for (i = 1; i <= NF; i++) {
             if ($i ~ /^URIs:/)   { uris = $i;   sub(/^URIs:[ \t]*/, "", uris) }
             if ($i ~ /^Suites:/) { suites = $i; sub(/^Suites:[ \t]*/, "", suites) }
             if ($i ~ /^Types:/)  { types = $i }
           }
           if (types ~ /deb( |$)/ && uris != "" && suites ~ /(^| )[a-z]+( |$)/ && uris !~ /security/) {
             split(uris, u, " "); print u[1] } }' "$f"
  done
  # one-line format
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -e $f ]] || continue
    awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) while ($i !~ /\]$/) i++; if ($2 ~ /^\[/) i++
                       if ($(i+1) !~ /-/ && $i !~ /security/) print $i }' "$f"
  done
}
MIRROR=$(mirror | head -1)
[[ -n $MIRROR ]] || die "no Debian mirror found in /etc/apt (set SLURM_LAB_MIRROR)"
log "mirror: $MIRROR (from this machine's apt configuration)"

# --------------------------------------------------------------- debootstrap
# DPkg::Lock::Timeout waits for dpkg's lock, not for the lists lock of an `apt-get update`
# that another script (another root.sh, start.sh) may be running: retry a few times.
command -v debootstrap >/dev/null || {
  log "installing debootstrap"
  for try in 1 2 3 4 5 6 7 8 9 10; do
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -q install -y --no-install-recommends debootstrap >&2 && break
    ((try < 10)) || die "could not install debootstrap"
    log "apt-get install debootstrap failed (try $try): apt-get update, then again in 6 s"
    apt-get -o DPkg::Lock::Timeout=600 -q update >&2 || true
    sleep 6
  done
}
# an older debootstrap (bookworm's) has no script for a newer suite: sid's works for it
SCRIPT=/usr/share/debootstrap/scripts/$REL
[[ -e $SCRIPT ]] || SCRIPT=/usr/share/debootstrap/scripts/sid
[[ -e $SCRIPT ]] || die "debootstrap has neither a $REL nor a sid script"

TMP=$CACHE/.build-$REL.$$
TIMINGS=$CACHE/$REL.timings
cleanup() {
  local rc=$?
  umount_below "$TMP" 2>/dev/null || true
  if ((rc != 0)); then log "build failed (exit $rc): removing $TMP"; safe_rm "$TMP" || true; fi
}
trap cleanup EXIT
# Long steps run in the background and are waited for, so that a signal is acted on at
# once (bash defers traps until a foreground child ends): the child is killed, the temp
# dir removed.  A SIGKILL leaves the temp dir, which the next run removes.
CHILD=""
on_signal() { [[ -n $CHILD ]] && kill -TERM "$CHILD" 2>/dev/null && wait "$CHILD" 2>/dev/null; exit 130; }
trap on_signal INT TERM HUP
bg() { "$@" & CHILD=$!; local rc=0; wait "$CHILD" || rc=$?; CHILD=""; return "$rc"; }
t0=$(date +%s.%N)
el() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
mkdir -p "$TMP"
log "debootstrap --variant=minbase $REL into $TMP ($SCRIPT)"
bg debootstrap --variant=minbase "$REL" "$TMP" "$MIRROR" "$SCRIPT" > "$CACHE/$REL.debootstrap.log" 2>&1 \
  || { tail -n 30 "$CACHE/$REL.debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/$REL.debootstrap.log)"; }
t_boot=$(el "$t0")
log "debootstrap done in ${t_boot}s"

# ------------------------------------------------------------------ packages
t1=$(date +%s.%N)
# The mirror may be a frozen snapshot whose Release files have expired.
echo 'Acquire::Check-Valid-Until "false";' > "$TMP/etc/apt/apt.conf.d/99allocwatch-no-valid-until"
# no apt cache kept, no recommends, no docs: the root stays small
cat > "$TMP/etc/apt/apt.conf.d/99allocwatch-small" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Binary::apt::APT::Keep-Downloaded-Packages "false";
EOF
cat > "$TMP/etc/dpkg/dpkg.cfg.d/99allocwatch-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
# inroot.sh binds the host's /etc/hosts over this one; debootstrap writes none
[[ -e $TMP/etc/hosts ]] || printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$TMP/etc/hosts"
printf '#!/bin/sh\nexit 101\n' > "$TMP/usr/sbin/policy-rc.d"; chmod 755 "$TMP/usr/sbin/policy-rc.d"
# package scripts want /proc: a private mount namespace, so nothing stays mounted afterwards
in_tmp() {
  unshare --mount --propagation private -- /bin/sh -c \
    'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' "$TMP" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"
}
APT=(apt-get -q -o Dpkg::Options::=--force-confold)
bg in_tmp "${APT[@]}" update > "$CACHE/$REL.apt.log" 2>&1 || { tail -n 30 "$CACHE/$REL.apt.log" >&2; die "apt-get update in the root failed"; }
bg in_tmp "${APT[@]}" install -y "${PKGS[@]}" >> "$CACHE/$REL.apt.log" 2>&1 \
  || { tail -n 30 "$CACHE/$REL.apt.log" >&2; die "apt-get install in the root failed (log: $CACHE/$REL.apt.log)"; }
for u in "${USERS[@]}"; do
  in_tmp /bin/sh -c "id -u $u >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin $u" \
    || die "useradd $u in the root failed"
done
in_tmp apt-get clean
# the system database mariadb-server's postinst made (~140 MB; /var/lib/mysql in trixie,
# /var/lib/mariadb in forky): each lab makes its own
rm -rf "$TMP"/var/lib/mysql/* "$TMP"/var/lib/mariadb/* "$TMP"/var/log/mysql/* "$TMP"/var/log/mariadb/* 2>/dev/null || true
rm -rf "$TMP"/var/lib/apt/lists/*_Packages "$TMP"/var/lib/apt/lists/*_Translation-* "$TMP"/var/cache/apt/*.bin
t_pkgs=$(el "$t1")
VERSION=$(in_tmp dpkg-query -W -f='${Version}' slurmctld)
{
  echo "release=$REL"
  echo "slurm=$VERSION"
  echo "mariadb=$(in_tmp dpkg-query -W -f='${Version}' mariadb-server)"
  echo "munge=$(in_tmp dpkg-query -W -f='${Version}' munge)"
  echo "built=$(date -u +%FT%TZ)"
} > "$TMP/.allocwatch-root"
umount_below "$TMP" || die "something is still mounted below $TMP"

# ------------------------------------------------------------------ publish
if [[ -e $ROOT ]]; then
  root_busy && die "a process runs in $ROOT: stop its lab first (the new build is discarded)"
  mv -T "$ROOT" "$CACHE/.old-$REL.$$"
fi
mv -T "$TMP" "$ROOT"
trap - EXIT
[[ -e $CACHE/.old-$REL.$$ ]] && safe_rm "$CACHE/.old-$REL.$$"
size=$(du -sx --block-size=1M "$ROOT" | cut -f1)
printf 'debootstrap %s s\npackages %s s\ntotal %s s\nsize %s MB\nslurm %s\n' \
  "$t_boot" "$t_pkgs" "$(el "$t0")" "$size" "$VERSION" | tee "$TIMINGS" | sed 's/^/[slurm-root] /' >&2
echo "$ROOT"
