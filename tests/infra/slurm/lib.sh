# lib.sh -- shared helpers for start.sh, stop.sh and jobs.sh (sourced, not run).
# Everything a lab owns lives under its state directory $LAB:
#   etc/    slurm.conf gres.conf slurmdbd.conf munge.key jwt_hs256.key
#   var/    run/ (sockets, daemon pid files) log/ spool/ mysql/ munge/ fakedev/ jobs/
#   pids/   NAME.pid = "PID STARTTIME" for every process we started (only those are ever signalled)
#   env.sh token.sh inroot.sh ports.env timings.txt started_at
#   root    (a lab started with start.sh --root only) the Debian root the daemons run in

SLURM_LAB_SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd slurmrestd-jwt slurmrestd-local)
REST_USER=slurmrest
JOB_USERS=(alice bob)

lab_init() {  # DIR
  [[ -n ${1:-} ]] || { echo "usage: $0 DIR" >&2; exit 2; }
  mkdir -p "$1"
  LAB=$(cd "$1" && pwd -P)
  ETC=$LAB/etc; VAR=$LAB/var; RUN=$VAR/run; LOG=$VAR/log; PIDS=$LAB/pids
  CLUSTER=${SLURM_LAB_CLUSTER:-jeanzay}
  export SLURM_CONF=$ETC/slurm.conf
  ROOT=""; RX=()
  if [[ -s $LAB/root ]]; then read -r ROOT < "$LAB/root"; lab_use_root; fi
}

# A lab in a Debian root (start.sh --root): every Slurm, munge and MariaDB program is the
# root's, run through inroot.sh (chroot, private mount namespace).  RX is that prefix, for
# commands that another program execs (start_bg, timeout, env); for the ones the scripts
# call directly, shell functions of the same name add it, so the rest of the code reads the
# same for both kinds of lab.  A host lab has RX=() and no such functions.
ROOT_CMDS=(sacct sacctmgr sbatch scancel scontrol sdiag sinfo squeue sreport sshare srun slurmd
           munge unmunge mariadb mariadb-admin mariadb-install-db dpkg dpkg-query runuser)
lab_use_root() {
  local c
  RX=("$SLURM_LAB_SCRIPTS/inroot.sh" "$LAB")
  for c in "${ROOT_CMDS[@]}"; do eval "$c() { \"\${RX[@]}\" $c \"\$@\"; }"; done
}

# ------------------------------------------------------------------ logging
T0=$(date +%s%N); TPREV=$T0
elapsed() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }
log() { printf '[slurm-lab %5ss] %s\n' "$(elapsed "$T0")" "$*" >&2; }
mark() {  # phase -> stderr and $LAB/timings.txt
  local line; line=$(printf '%-18s %6s s %8s s' "$1" "$(elapsed "$TPREV")" "$(elapsed "$T0")")
  echo "$line" >> "$LAB/timings.txt"; log "phase $line"
  TPREV=$(date +%s%N)
}
tail_logs() {  # file... : print the tail of each existing log on stderr
  local f
  for f in "$@"; do
    [[ -s $f ]] || continue
    printf -- '----- tail -n 40 %s -----\n' "$f" >&2
    tail -n 40 "$f" >&2
  done
}
die() {  # message [log files...]
  local msg=$1; shift
  log "FATAL: $msg"
  tail_logs "$@"
  exit 1
}

# ---------------------------------------------------------------- processes
# A pid file holds "PID STARTTIME" (field 22 of /proc/PID/stat), so a recycled
# PID is never mistaken for ours.
proc_starttime() {  # pid -> starttime (fails if gone)
  local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  set -- $s
  echo "${20}"
}
proc_state() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; echo "${s%% *}"; }
pid_of() { local p; [[ -s $PIDS/$1.pid ]] && read -r p _ < "$PIDS/$1.pid" && echo "$p"; }
alive() {  # name -> 0 if the recorded process still runs (zombies count as dead)
  local f=$PIDS/$1.pid p st now state
  [[ -s $f ]] || return 1
  read -r p st < "$f" || return 1
  [[ $p =~ ^[0-9]+$ ]] || return 1
  now=$(proc_starttime "$p") || return 1
  [[ $now == "${st:-x}" ]] || return 1
  state=$(proc_state "$p") || return 1
  [[ $state != Z && $state != X ]]
}
start_bg() {  # name cmd... : start a foreground daemon in its own session, record its pid
  local name=$1; shift
  # setsid execs in place (we are not a process-group leader), so $! is the daemon.
  # stdin/stdout/stderr are detached from the caller: a caller reading our output
  # through a pipe is never kept waiting by a daemon.
  SLURM_LAB_OWNER=$LAB setsid "$@" </dev/null >>"$LOG/$name.out" 2>&1 &
  local pid=$!
  echo "$pid $(proc_starttime "$pid" || echo 0)" > "$PIDS/$name.pid"
}
stop_one() {  # name [grace-seconds]
  local name=$1 grace=${2:-15} p i
  p=$(pid_of "$name") || return 0
  if [[ $p != "$$" ]] && alive "$name"; then
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do alive "$name" || break; sleep 0.1; done
    if alive "$name"; then
      echo "stop: $name (pid $p) ignored SIGTERM for ${grace}s, sending SIGKILL" >&2
      kill -KILL "$p" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do alive "$name" || break; sleep 0.1; done
    fi
    echo "stopped $name (pid $p)" >&2
  fi
  rm -f "$PIDS/$name.pid"
}
# wait until cmd succeeds; die early (with the log tail) if the daemon exits
wait_up() {  # seconds name logfile cmd...
  local t=$1 name=$2 logf=$3 end; shift 3
  end=$(( $(date +%s) + t ))
  until "$@" >/dev/null 2>&1; do
    if [[ -n $name ]] && ! alive "$name"; then
      die "$name exited during startup" "$LOG/$name.out" "$logf"
    fi
    (( $(date +%s) < end )) || die "timeout (${t}s) waiting for ${name:-condition}: $*" "$LOG/$name.out" "$logf"
    sleep 0.2
  done
}

MYSQL() { mariadb --no-defaults -S "$RUN/mysqld.sock" -uroot "$@" </dev/null; }
dbd_ready() { timeout 10 "${RX[@]}" sacctmgr -n -P show cluster format=cluster </dev/null >/dev/null 2>&1; }

start_slurmdbd() {  # [extra env assignments...] : start slurmdbd and wait until it answers
  start_bg slurmdbd "${RX[@]}" env "$@" slurmdbd -D
  wait_up 60 slurmdbd "$LOG/slurmdbd.log" dbd_ready
}

# ------------------------------------------------------------------- rollup
# sreport reads the hourly rollup tables, which slurmdbd fills only for hours
# that have ended (at startup, then hourly).  To make the current hour visible
# now: stop slurmdbd, rewind <cluster>_last_ran_table to the start of the hour
# the lab was started in, run slurmdbd once under libfaketime set just past the
# end of the current hour, wait for its startup rollup, restart it normally.
# Repeatable.  Prints "FROM TO" (local time, ISO) = the hours sreport now covers.
force_rollup() {
  local lib now hour_start from off
  lib=$(dpkg -L libfaketime 2>/dev/null | grep -m1 '/libfaketimeMT\.so\.1$') \
    || die "libfaketime not installed (apt-get install faketime)"
  now=$(date +%s); hour_start=$(( now - now % 3600 ))
  from=$(cat "$LAB/started_at" 2>/dev/null || echo "$now"); from=$(( from - from % 3600 ))
  (( from <= hour_start )) || from=$hour_start
  stop_one slurmdbd
  MYSQL slurm_acct_db -e "UPDATE ${CLUSTER}_last_ran_table SET
      hourly_rollup  = LEAST(hourly_rollup, $from),
      daily_rollup   = LEAST(daily_rollup, UNIX_TIMESTAMP(DATE(FROM_UNIXTIME($from)))),
      monthly_rollup = LEAST(monthly_rollup, UNIX_TIMESTAMP(DATE_FORMAT(FROM_UNIXTIME($from),'%Y-%m-01')))" \
    || die "could not rewind ${CLUSTER}_last_ran_table" "$LOG/mariadbd.log"
  off=$(( 3600 - now % 3600 + 20 ))
  start_bg slurmdbd "${RX[@]}" env FAKETIME="+${off}s" LD_PRELOAD="$lib" slurmdbd -D
  rolled_past() {
    local h; h=$(MYSQL -N slurm_acct_db -e "select hourly_rollup from ${CLUSTER}_last_ran_table" 2>/dev/null)
    [[ -n $h ]] && (( h > $1 ))
  }
  wait_up 90 slurmdbd "$LOG/slurmdbd.log" rolled_past "$now"
  stop_one slurmdbd
  start_slurmdbd
  log "usage rolled up from $(date -d "@$from" +%FT%T) to $(date -d "@$((hour_start + 3600))" +%FT%T)"
  echo "$(date -d "@$from" +%FT%T) $(date -d "@$((hour_start + 3600))" +%FT%T)"
}
