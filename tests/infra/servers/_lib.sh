# Shared by start.sh, stop.sh and status.sh (sourced, not run).
# shellcheck shell=bash

AW_ALL_UNITS=(vm influxd proxy smtp smtpauth smtps smtpstrict am)
AW_PY=/usr/bin/python3   # Debian's python3: python3-aiosmtpd installs for it, not for pyenv's

aw_die() { echo "servers: ERROR: $*" >&2; exit 1; }
aw_log() { echo "servers: $*" >&2; }

# aw_expand_units "vm,influx1,mail" -> prints unit names, in start order, deduplicated.
# Groups: influx1 = influxd+proxy, mail = smtp+smtpauth+smtps+smtpstrict, all = everything.
aw_expand_units() {
    local want=" " item
    local IFS=','
    for item in $1; do
        case "$item" in
            all) want+="vm influxd proxy smtp smtpauth smtps smtpstrict am " ;;
            influx1|influx) want+="influxd proxy " ;;
            mail) want+="smtp smtpauth smtps smtpstrict " ;;
            vm|influxd|proxy|smtp|smtpauth|smtps|smtpstrict|am) want+="$item " ;;
            "") ;;
            *) aw_die "unknown server '$item' (known: vm influxd proxy smtp smtpauth smtps smtpstrict am; groups: influx1 mail all)" ;;
        esac
    done
    IFS=' '
    local u
    for u in "${AW_ALL_UNITS[@]}"; do
        [[ "$want" == *" $u "* ]] && echo "$u"
    done
    return 0
}

# Field 22 of /proc/PID/stat (start time in clock ticks): together with the
# PID it identifies a process, so a recycled PID is never taken for ours.
aw_starttime() {
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    [[ "$1" != Z && "$1" != X ]] || return 1   # zombie or dead: not running
    echo "${20}"
}

# aw_pid DIR UNIT -> prints the recorded PID if that very process is still running.
aw_pid() {
    local f="$1/pids/$2" pid st want
    [[ -f "$f" ]] || return 1
    read -r pid want < "$f" || true
    [[ -n "${pid:-}" ]] || return 1
    st=$(aw_starttime "$pid") || return 1
    [[ -z "${want:-}" || "$st" == "$want" ]] || return 1
    echo "$pid"
}

aw_lock() {   # serialise start/stop on one DIR
    mkdir -p "$1"
    exec 9>"$1/.lock"
    flock -w 300 9 || aw_die "could not lock $1/.lock within 300 s"
}
