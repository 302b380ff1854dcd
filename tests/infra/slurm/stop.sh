#!/usr/bin/env bash
# stop.sh DIR [--purge] -- stop the lab started by start.sh DIR, and nothing else.
#  1. cancels the lab's jobs (while slurmctld still runs) and waits for them to end;
#  2. sends TERM (KILL after a grace period) to the PIDs recorded in DIR/pids/*.pid,
#     each checked against its recorded start time so a recycled PID is never hit;
#  3. sweeps leftovers of this lab only: processes carrying its marker SLURM_LAB_OWNER=DIR
#     in their environment (job processes; jobs.sh and start.sh set it), and slurmstepd
#     processes holding DIR/var/log/slurmd.log open (left behind if slurmd died first).
# Idempotent: a second call finds nothing to do.  --purge also deletes DIR.
set -uo pipefail
exec </dev/null
unset SLURM_LAB_OWNER   # our own children must never match the sweep
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -n ${1:-} ]] || { echo "usage: $0 DIR [--purge]" >&2; exit 2; }
[[ -d $1 ]] || { echo "stop: $1 does not exist, nothing to do" >&2; exit 0; }
lab_init "$1"

stop_one watchdog 2

# 1. jobs first: their slurmstepd processes are detached from slurmd
if alive slurmctld; then
  ids=$(timeout 10 "${RX[@]}" squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
  if [[ -n ${ids// } ]]; then
    echo "stop: cancelling jobs $ids" >&2
    timeout 10 "${RX[@]}" scancel $ids 2>/dev/null
    for ((i = 0; i < 100; i++)); do
      [[ -z $(timeout 5 "${RX[@]}" squeue -h -o %A 2>/dev/null) ]] && break; sleep 0.2
    done
  fi
fi

# 2. daemons, in reverse start order
stop_one slurmrestd-jwt
stop_one slurmrestd-local
stop_one slurmd
stop_one slurmctld
stop_one slurmdbd 30
stop_one mariadbd 60
stop_one munged

# 3. leftovers of this lab only (exact marker match), never ourselves or our ancestors
protected=" $$ "; p=$$
while [[ $p =~ ^[0-9]+$ ]] && ((p > 1)); do
  p=$(awk '/^PPid:/ {print $2}' "/proc/$p/status" 2>/dev/null); protected+="$p "
done
is_ours() {  # pid -> 0 if it descends from this very script (our own subshells)
  local q=$1 i
  for ((i = 0; i < 64 && q > 1; i++)); do
    q=$(awk '/^PPid:/ {print $2}' "/proc/$q/status" 2>/dev/null) || return 1
    [[ -n $q ]] || return 1
    [[ $q == "$$" ]] && return 0
  done
  return 1
}
leftovers() {
  local f pid
  {
    # processes that inherited the marker (job scripts and their children) ...
    grep -lzxF "SLURM_LAB_OWNER=$LAB" /proc/[0-9]*/environ 2>/dev/null | sed 's|^/proc/||; s|/environ$||'
    # ... and slurmstepd, which clears its environment but keeps this lab's slurmd.log open
    for f in $(grep -lx slurmstepd /proc/[0-9]*/comm 2>/dev/null); do
      pid=${f#/proc/}; pid=${pid%/comm}
      # (a root lab's slurmstepd, in its private mount namespace, shows it as ROOT/DIR/...)
      ls -l "/proc/$pid/fd" 2>/dev/null | grep -qF -e "-> $LOG/slurmd.log" ${ROOT:+-e "-> $ROOT$LOG/slurmd.log"} && echo "$pid"
    done
  } | sort -un | while read -r pid; do
    [[ $protected == *" $pid "* ]] && continue
    is_ours "$pid" && continue
    [[ $(proc_state "$pid") == Z ]] && continue
    echo "$pid"
  done
}
left=$(leftovers | tr '\n' ' ')
if [[ -n ${left// } ]]; then
  echo "stop: terminating leftover lab processes: $left" >&2
  kill -TERM $left 2>/dev/null
  for ((i = 0; i < 30; i++)); do left=$(leftovers | tr '\n' ' '); [[ -z ${left// } ]] && break; sleep 0.1; done
  [[ -z ${left// } ]] || { echo "stop: SIGKILL $left" >&2; kill -KILL $left 2>/dev/null; }
fi

if [[ ${2:-} == --purge ]]; then
  # a root lab's mount point in the root (an empty directory: the binds live only in the
  # daemons' private mount namespaces); its parents may belong to the root, so they stay
  [[ -n $ROOT && -d $ROOT$LAB ]] && { rmdir -- "$ROOT$LAB" 2>/dev/null || echo "stop: $ROOT$LAB is not empty, left in place" >&2; }
  rm -rf -- "$LAB"
  echo "stop: purged $LAB" >&2
fi
exit 0
