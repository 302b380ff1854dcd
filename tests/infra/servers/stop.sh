#!/usr/bin/env bash
# Stop servers that start.sh started in DIR.
#
#   stop.sh DIR [--only LIST]      (LIST as for start.sh; default: all)
#
# Signals only the PIDs recorded in DIR/pids/ (and only if the PID still
# belongs to the process start.sh started: its start time is checked): TERM,
# then KILL after $AW_STOP_GRACE seconds (default 10).  Waits until they are
# gone.  Keeps DIR/ports/ and the data, so `start.sh DIR --only NAME` brings a
# server back on the same port with its data.  Idempotent: stopping a stopped
# server (or a DIR that never existed) succeeds.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=_lib.sh
source "$HERE/_lib.sh"

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

DIR="" ONLY="all"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --only) [[ $# -ge 2 ]] || usage; ONLY=$2; shift 2 ;;
        --only=*) ONLY=${1#--only=}; shift ;;
        -h|--help) usage ;;
        -*) usage ;;
        *) [[ -z "$DIR" ]] || usage; DIR=$1; shift ;;
    esac
done
[[ -n "$DIR" ]] || usage
aw_expand_units "$ONLY" > /dev/null   # dies here on an unknown name
[[ -d "$DIR/pids" ]] || exit 0
DIR=$(cd "$DIR" && pwd)
mapfile -t UNITS < <(aw_expand_units "$ONLY")
GRACE=${AW_STOP_GRACE:-10}

aw_lock "$DIR"

declare -A PID=()
for u in "${UNITS[@]}"; do
    if p=$(aw_pid "$DIR" "$u"); then
        PID[$u]=$p
        kill -TERM "$p" 2>/dev/null || true
    else
        rm -f "$DIR/pids/$u"   # stale record: nothing of ours runs under it
    fi
done
[[ ${#PID[@]} -gt 0 ]] || exit 0

t0=$(date +%s.%N)
still_alive() {   # still_alive SECONDS: wait up to SECONDS; print units still running
    local end=$(( $(date +%s) + $1 )) u alive
    while :; do
        alive=()
        for u in "${!PID[@]}"; do aw_pid "$DIR" "$u" >/dev/null && alive+=("$u"); done
        if [[ ${#alive[@]} -eq 0 ]] || (( $(date +%s) >= end )); then
            echo "${alive[*]}"
            return 0
        fi
        sleep 0.05
    done
}
killed=$(still_alive "$GRACE")
if [[ -n "$killed" ]]; then
    for u in $killed; do kill -KILL "${PID[$u]}" 2>/dev/null || true; done
    left=$(still_alive 10)
    [[ -z "$left" ]] || aw_die "still running after KILL: $left"
fi
for u in "${!PID[@]}"; do rm -f "$DIR/pids/$u"; done
aw_log "stopped: ${!PID[*]} in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')s${killed:+ (KILLed after ${GRACE}s grace: $killed)}"
