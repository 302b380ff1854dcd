#!/usr/bin/env bash
# jobs.sh DIR SUBCOMMAND ARGS... -- submit short test jobs to the lab started by start.sh DIR.
# Jobs run as real Unix users (runuser -u USER -- sbatch), USER defaults to alice.
# Every submit prints the job id (for an array: the array's job id) alone on stdout;
# progress messages go to stderr.
#
#   cpu ACCOUNT NCPUS SECONDS [USER]    cpu_p1, NCPUS tasks, sleep SECONDS      (billing = NCPUS)
#   gpu ACCOUNT NGPUS SECONDS [USER]    gpu_p13, 1 CPU + NGPUS gres/gpu         (billing = floor(0.25 + 4*NGPUS))
#   bill ACCOUNT NCPUS SECONDS [USER]   cpu_bill, NCPUS tasks                   (billing = 2*NCPUS)
#   array ACCOUNT SPEC SECONDS [USER]   cpu_p1, --array=SPEC (e.g. 0-3 or 1-5%2), 1 CPU per task
#   requeue ACCOUNT SECONDS [USER]      runs ~1 s, is requeued (scontrol requeue), then runs SECONDS
#                                       again: sacct -D shows a REQUEUED row and a COMPLETED row.
#                                       Returns once the second run has been scheduled.
#   fail ACCOUNT [USER]                 cpu_p1, 1 CPU, exits 3 -> FAILED, ExitCode 3:0
#   pending-cancel ACCOUNT [USER]       submitted held, cancelled before it ever starts
#   long ACCOUNT SECONDS [USER]         cpu_p1, 1 CPU; returns once it is RUNNING
#   wait-idle [TIMEOUT]                 wait (default 300 s) until squeue is empty, the DBD agent
#                                       queue is flushed and every job slurmctld knows has an End
#                                       in sacct.  Prints nothing.
#   rollup                              force slurmdbd's usage rollup up to the end of the current
#                                       hour (libfaketime), so sreport sees the jobs.  Prints
#                                       "FROM TO" (local ISO times, whole hours) for sreport
#                                       start=FROM end=TO.  Run wait-idle first.
set -euo pipefail
exec </dev/null
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -n ${1:-} && -n ${2:-} ]] || { sed -n '2,25p' "${BASH_SOURCE[0]}" >&2; exit 2; }
lab_init "$1"; shift
[[ -s $LAB/env.sh ]] || die "$LAB/env.sh missing: run start.sh $LAB first"
source "$LAB/env.sh"
JOBDIR=$VAR/jobs
cmd=$1; shift

need() { (( $# >= n )) || { echo "usage: jobs.sh DIR $cmd $usage" >&2; exit 2; }; }
minutes() { echo $(( ($1 + 59) / 60 + 2 )); }   # generous time limit
submit() {  # user sbatch-args... -> job id
  local u=$1 out; shift
  out=$(cd "$JOBDIR" && runuser -u "$u" -- env SLURM_LAB_OWNER="$LAB" \
        sbatch --parsable --chdir="$JOBDIR" -o "$JOBDIR/%j.out" "$@" 2>&1) \
    || die "sbatch as $u failed: $out"
  out=${out##*$'\n'}; echo "${out%%;*}"
}
job_state() { squeue -h -j "$1" -o %T 2>/dev/null | head -1; }
wait_state() {  # jobid regex seconds
  local end=$(( $(date +%s) + $3 )) s
  while :; do
    s=$(job_state "$1")
    [[ $s =~ $2 ]] && return 0
    (( $(date +%s) < end )) || die "job $1 did not reach $2 within $3 s (state: ${s:-gone})" \
      "$LOG/slurmctld.log"
    sleep 0.2
  done
}

case $cmd in
  cpu|bill)
    n=3 usage="ACCOUNT NCPUS SECONDS [USER]"; need "$@"
    part=cpu_p1; [[ $cmd == bill ]] && part=cpu_bill
    submit "${4:-alice}" -A "$1" -p "$part" -n "$2" -t "$(minutes "$3")" -J "lab-$cmd" --wrap "sleep $3" ;;
  gpu)
    n=3 usage="ACCOUNT NGPUS SECONDS [USER]"; need "$@"
    submit "${4:-alice}" -A "$1" -p gpu_p13 -n 1 --gres="gpu:$2" -t "$(minutes "$3")" -J lab-gpu \
      --wrap "sleep $3" ;;
  array)
    n=3 usage="ACCOUNT SPEC SECONDS [USER]"; need "$@"
    submit "${4:-alice}" -A "$1" -p cpu_p1 -n 1 --array="$2" -t "$(minutes "$3")" -J lab-array \
      -o "$JOBDIR/%A_%a.out" --wrap "sleep $3" ;;
  fail)
    n=1 usage="ACCOUNT [USER]"; need "$@"
    submit "${2:-alice}" -A "$1" -p cpu_p1 -n 1 -t 2 -J lab-fail --wrap 'sleep 1; exit 3' ;;
  requeue)
    n=2 usage="ACCOUNT SECONDS [USER]"; need "$@"
    id=$(submit "${3:-alice}" -A "$1" -p cpu_p1 -n 1 --requeue -t "$(minutes "$2")" -J lab-requeue \
         --open-mode=append --wrap "sleep $2")
    wait_state "$id" '^RUNNING$' 120
    sleep 1.2                       # first run lasts ~1 s
    scontrol requeue "$id" || die "scontrol requeue $id failed" "$LOG/slurmctld.log"
    # a requeued job gets a BeginTime in the future (~2 min): make it eligible now
    end=$(( $(date +%s) + 60 ))
    until scontrol update jobid="$id" StartTime=now >/dev/null 2>&1; do
      (( $(date +%s) < end )) || die "could not release requeued job $id" "$LOG/slurmctld.log"
      sleep 0.3
    done
    wait_state "$id" '^(RUNNING|COMPLETING|COMPLETED|)$' 120
    echo "$id" ;;
  pending-cancel)
    n=1 usage="ACCOUNT [USER]"; need "$@"
    id=$(submit "${2:-alice}" -A "$1" -p cpu_p1 -n 1 --hold -t 2 -J lab-pending --wrap 'sleep 1')
    scancel "$id" || die "scancel $id failed"
    echo "$id" ;;
  long)
    n=2 usage="ACCOUNT SECONDS [USER]"; need "$@"
    id=$(submit "${3:-alice}" -A "$1" -p cpu_p1 -n 1 -t "$(minutes "$2")" -J lab-long --wrap "sleep $2")
    wait_state "$id" '^RUNNING$' 120
    echo "$id" ;;
  wait-idle)
    timeout_s=${1:-300}; end=$(( $(date +%s) + timeout_s ))
    idle() {
      [[ -z $(squeue -h -o %A 2>/dev/null) ]] || return 1
      sdiag 2>/dev/null | grep -q 'DBD Agent queue size: 0$' || return 1
      local ctld db id
      ctld=$(squeue -h -t all -o %A 2>/dev/null | sort -u) || return 1    # finished jobs still in memory
      db=$(sacct -a -X -D -n -P --noconvert -S 1970-01-01T00:00:00 -E now -o JobIDRaw,End,State 2>/dev/null) \
        || return 1
      ! grep -qE '\|(Unknown|None)?\|' <<<"$db" || return 1
      ! grep -qE '\|(PENDING|RUNNING|REQUEUED_HOLD|SUSPENDED|REQUEUE_FED)' <<<"$db" || return 1
      for id in $ctld; do grep -q "^$id|" <<<"$db" || return 1; done
    }
    until idle; do
      (( $(date +%s) < end )) || { squeue >&2; die "lab not idle after ${timeout_s}s" "$LOG/slurmctld.log"; }
      sleep 0.5
    done ;;
  rollup)
    force_rollup ;;
  *)
    sed -n '2,25p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
