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
#                                       Returns once the second run has started (~12 s: a
#                                       requeued job may only restart after cred_expire=10 s).
#   fail ACCOUNT [USER]                 cpu_p1, 1 CPU, exits 3 -> FAILED, ExitCode 3:0
#   pending-cancel ACCOUNT [USER]       submitted held, cancelled before it ever starts (never
#                                       eligible: absent from sacct -S/-E windows, see README)
#   eligible-cancel ACCOUNT [USER]      eligible but never started (hidden DOWN partition
#                                       lab_hold), then cancelled: in sacct windows, Start=None
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
[[ -n ${1:-} && -n ${2:-} ]] || { sed -n '2,29p' "${BASH_SOURCE[0]}" >&2; exit 2; }
lab_init "$1"; shift
cd "$LAB"
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
    # The requeued job gets BeginTime = now + cred_expire (10 s here, AuthInfo in slurm.conf):
    # slurmd refuses to relaunch it earlier ("Job credential revoked"), so do not force it.
    wait_state "$id" '^PENDING$' 60       # first run over (RUNNING -> COMPLETING -> PENDING)
    end=$(( $(date +%s) + 180 ))          # 180: a lab started by an older start.sh has cred_expire=120
    until [[ $(scontrol -o show job "$id" 2>/dev/null) =~ JobState=(RUNNING|COMPLETING|COMPLETED)\ .*Restarts=1\  ]]; do
      (( $(date +%s) < end )) || die "requeued job $id did not run again within 180 s" "$LOG/slurmctld.log"
      sleep 0.3
    done
    echo "$id" ;;
  pending-cancel)
    # held => never eligible: slurmdbd stores time_eligible=0 and Start=End=cancel time, and
    # sacct/REST with a -S/-E window do NOT return it (only sacct -j ID does)
    n=1 usage="ACCOUNT [USER]"; need "$@"
    id=$(submit "${2:-alice}" -A "$1" -p cpu_p1 -n 1 --hold -t 2 -J lab-pending --wrap 'sleep 1')
    scancel "$id" || die "scancel $id failed"
    echo "$id" ;;
  eligible-cancel)
    # eligible but never started (pends in the hidden DOWN partition lab_hold, made on first
    # use), then cancelled: visible in windowed sacct with Start=None, ElapsedRaw=0, no AllocTRES
    n=1 usage="ACCOUNT [USER]"; need "$@"
    scontrol show partition lab_hold >/dev/null 2>&1 \
      || scontrol create partitionname=lab_hold nodes=ALL state=down hidden=yes >/dev/null 2>&1 \
      || scontrol show partition lab_hold >/dev/null 2>&1 || die "could not create partition lab_hold"
    id=$(submit "${2:-alice}" -A "$1" -p lab_hold -n 1 -t 2 -J lab-eligible --wrap 'sleep 1')
    # wait until slurmdbd has the eligible time, else the record could still be "never eligible"
    end=$(( $(date +%s) + 30 ))
    until [[ $(sacct -a -X -n -P -j "$id" -o Eligible 2>/dev/null) =~ ^[0-9]{4}- ]]; do
      (( $(date +%s) < end )) || die "job $id never became eligible in accounting" "$LOG/slurmctld.log"
      sleep 0.2
    done
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
      local q jobs ids db id el rows
      q=$(squeue -h -o %A 2>/dev/null) || return 1; [[ -z $q ]] || return 1   # a failing squeue is not "empty"
      q=$(sdiag 2>/dev/null) || return 1; grep -q 'DBD Agent queue size: 0$' <<<"$q" || return 1
      # every job slurmctld still knows (finished ones stay MinJobAge=300 s): "ID ELIGIBLE"
      jobs=$(scontrol -o show job 2>/dev/null | awk '{ id = ""; el = ""
               for (i = 1; i <= NF; i++) { if ($i ~ /^JobId=/) id = substr($i, 7)
                                           if ($i ~ /^EligibleTime=/) el = substr($i, 14) }
               if (id != "") print id, el }') || return 1
      [[ -n $jobs ]] || return 0
      ids=$(awk '{print $1}' <<<"$jobs" | paste -sd,)
      # query by id: a never-eligible (held) job is outside any -S/-E window
      db=$(sacct -a -X -D -n -P --noconvert -j "$ids" -o JobIDRaw,Eligible,End,State 2>/dev/null) || return 1
      while read -r id el; do
        rows=$(grep "^$id|" <<<"$db") || return 1                                 # not in accounting yet
        ! grep -qE '^[^|]*\|[^|]*\|(Unknown|None)?\|' <<<"$rows" || return 1        # no End yet
        ! grep -qE '\|(PENDING|RUNNING|SUSPENDED|REQUEUED_HOLD|REQUEUE_FED|RESIZING)$' <<<"$rows" || return 1
        # slurmdbd first stores time_eligible=0 and fills it in a few seconds later; until
        # then sacct -S/-E windows (and REST start_time) do not return the job
        [[ $el == Unknown ]] || ! grep -q "^$id|Unknown|" <<<"$rows" || return 1
      done <<<"$jobs"
    }
    until idle; do
      (( $(date +%s) < end )) || { squeue >&2; die "lab not idle after ${timeout_s}s" "$LOG/slurmctld.log"; }
      sleep 0.5
    done ;;
  rollup)
    force_rollup ;;
  *)
    sed -n '2,29p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
