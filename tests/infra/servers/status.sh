#!/usr/bin/env bash
# status.sh DIR : one line per server known in DIR: name, state, pid, port.
# Exit 0 if every server with a recorded PID is running, 1 otherwise.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=_lib.sh
source "$HERE/_lib.sh"
[[ $# -eq 1 ]] || { echo "usage: status.sh DIR" >&2; exit 2; }
DIR=$1 rc=0
for u in "${AW_ALL_UNITS[@]}"; do
    [[ -e "$DIR/ports/$u" || -e "$DIR/pids/$u" ]] || continue
    port=$(cat "$DIR/ports/$u" 2>/dev/null || echo -)
    if pid=$(aw_pid "$DIR" "$u"); then
        echo "$u running pid=$pid port=$port"
    elif [[ -e "$DIR/pids/$u" ]]; then
        echo "$u DEAD (recorded pid $(awk '{print $1}' "$DIR/pids/$u")) port=$port"; rc=1
    else
        echo "$u stopped port=$port"
    fi
done
exit $rc
