#!/bin/sh
# inroot.sh DIR CMD [ARGS...] -- run CMD for the lab in DIR, with SLURM_CONF=DIR/etc/slurm.conf
# unless set.  A lab started with start.sh --root has its Debian root's path in DIR/root: CMD
# then runs chrooted in that root, in a private mount namespace holding a fresh /proc, a
# read-only /sys, the host's /etc/hosts and DIR bound at the same path (so every path in the configs is the same
# inside and outside).  The mounts vanish with the process: nothing is ever left mounted on
# the host, and several labs can share one root.  The network namespace is the host's.
# Every step execs in place, so the PID of `inroot.sh DIR daemon` is the daemon's.
# A lab without DIR/root (bookworm's packages on the host) runs CMD as it is.
set -e
[ $# -ge 2 ] || { echo "usage: inroot.sh DIR CMD [ARGS...]" >&2; exit 2; }
lab=$(cd "$1" && pwd -P); shift
: "${SLURM_CONF:=$lab/etc/slurm.conf}"; export SLURM_CONF
[ -s "$lab/root" ] || exec "$@"
read -r root < "$lab/root"
[ -e "$root/.allocwatch-root" ] || { echo "inroot.sh: $root is not a finished root (root.sh)" >&2; exit 1; }
[ -d "$root$lab" ] || mkdir -p "$root$lab"       # the mount point (an empty directory)
[ -e "$root/etc/hosts" ] || : > "$root/etc/hosts"  # mount point for the host's /etc/hosts
exec unshare --mount --propagation private -- /bin/sh -c '
  r=$1 l=$2; shift 2
  mount -t proc proc "$r/proc" || exit 125
  mount -t sysfs -o ro sysfs "$r/sys" 2>/dev/null || true
  mount --bind "$l" "$r$l" || exit 125
  # the host'"'"'s names (hostname -s must resolve, e.g. for mariadb-install-db and slurmd)
  [ ! -e /etc/hosts ] || mount --bind -o ro /etc/hosts "$r/etc/hosts" || exit 125
  exec chroot "$r" "$@"' inroot "$root" "$lab" "$@"
