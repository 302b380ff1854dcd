#!/usr/bin/env bash
# selftest.sh [--release trixie|forky | --root ROOT] -- end-to-end smoke test of start.sh /
# jobs.sh / stop.sh (run as root): fresh lab in a temp dir (the options go to start.sh), one
# job of each kind, wait-idle, sacct (and sacct --json), REST for every data-parser version
# served (with a good, missing and wrong JWT), rollup + sreport, stop, check that no process
# is left, purge.  The Slurm commands are the lab's own ($SLURM_LAB_INROOT: in a root lab,
# the root's, chrooted).  Prints a transcript; exits non-zero if a step fails.
set -uo pipefail
S=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
D=$(mktemp -d)
OPTS=("$@")
el() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
fail() { echo "SELFTEST FAILED: $*"; bash "$S/stop.sh" "$D" >/dev/null 2>&1; exit 1; }
echo "### start.sh $D"
s=$(date +%s.%N); bash $S/start.sh "${OPTS[@]}" "$D" </dev/null 2>"$D.start.log" || { cat "$D.start.log"; rm -f "$D.start.log"; fail start.sh; }
sed -n '/^phase/,$p' "$D.start.log"; rm -f "$D.start.log"; echo "start.sh wall: $(el "$s") s"
source "$D/env.sh"; J="$SLURM_LAB_JOBS"; X=$SLURM_LAB_INROOT
V=${SLURM_LAB_REST_VERSIONS:-v0.0.38}; V=${V##* }          # the newest version served
echo "### Slurm $SLURM_LAB_SLURM_VERSION${SLURM_LAB_ROOT:+ (root $SLURM_LAB_ROOT)}, REST versions: ${SLURM_LAB_REST_VERSIONS:-?}"
echo "### env"; env | grep -E '^SLURM(_LAB|_CONF|RESTD)' | sort
echo "### submit (one of each)"
for args in "cpu A0150612345 2 3" "gpu a0160701234 2 3 bob" "bill abc 3 2" "array a0150612345 0-3 2 bob" \
            "fail orphanacct" "pending-cancel a0160701234" "eligible-cancel abc bob" "long abc 6 bob" "requeue a0150612345 3"; do
  s=$(date +%s.%N); id=$($J "$D" $args) || fail "jobs.sh $args"; [[ $args == pending-cancel* ]] && held=$id; printf '%-32s -> %-4s (%.1f s)\n' "$args" "$id" "$(el "$s")"
done
s=$(date +%s.%N); $J "$D" wait-idle || fail wait-idle; echo "wait-idle rc=$? ($(el "$s") s)"
echo "### sacct"
SLURM_TIME_FORMAT=%s $X sacct -a -X -D -P --noconvert -S 2026-01-01 --format=JobIDRaw,JobID,Cluster,Partition,Account,User,Start,End,ElapsedRaw,AllocCPUS,AllocTRES,State
echo "### sacct -j <pending-cancel id> (never eligible, absent above)"
SLURM_TIME_FORMAT=%s $X sacct -a -X -P --noconvert -j "$held" --format=JobIDRaw,Partition,Account,User,Eligible,Start,End,ElapsedRaw,State
echo "### sacct --json"
$X sacct -a -D --json -S 2026-01-01 > "$D/sacct.json" || fail "sacct --json"
python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); j=d["jobs"]
print("jobs:", len(j), "keys of the first:", ",".join(sorted(j[0])[:12]) + ",...", "meta:", json.dumps(d.get("meta", {}).get("slurm", {}).get("version", d.get("meta", {}).get("Slurm", {}))))' "$D/sacct.json" || fail "sacct --json output"
echo "### REST (versions: ${SLURM_LAB_REST_VERSIONS:-v0.0.38})"
T=$($SLURM_LAB_TOKEN_CMD root 600)
for v in ${SLURM_LAB_REST_VERSIONS:-v0.0.38}; do
  for ep in "slurm/$v/diag" "slurmdb/$v/jobs?start_time=2026-01-01"; do
    curl -s -w '\nHTTP %{http_code}\n' -H "X-SLURM-USER-NAME: root" -H "X-SLURM-USER-TOKEN: $T" "$SLURMRESTD_URL/$ep" > "$D/rest.out"
    printf '%-44s %s  ' "/$ep" "$(tail -1 "$D/rest.out")"; grep -q '^HTTP 200$' "$D/rest.out" || fail "REST /$ep with JWT"
    head -n -1 "$D/rest.out" | python3 -c '
import json,sys; d=json.load(sys.stdin); e=d.get("errors") or []
if e: print("errors:", e); sys.exit(1)
if "jobs" in d:
  def st(j):
    c = j["state"]["current"]; return ",".join(c) if isinstance(c, list) else c
  print("jobs:", len(d["jobs"]), " ".join("%s:%s:%s" % (j["job_id"], j["account"], st(j)) for j in d["jobs"][:6]), "...")
else:
  s = d.get("statistics", {}); print("diag: server_thread_count", s.get("server_thread_count"), "jobs_submitted", s.get("jobs_submitted"))' || fail "REST /$ep errors"
  done
done
echo "-- no token:";    code=$(curl -s -o /dev/null -w '%{http_code}' "$SLURMRESTD_URL/slurmdb/$V/jobs"); echo "HTTP $code"; [[ $code == 401 ]] || fail "no token gave $code"
echo "-- wrong token:"; curl -s -o "$D/bad.json" -w 'HTTP %{http_code}' -H "X-SLURM-USER-NAME: root" -H "X-SLURM-USER-TOKEN: ${T%?}x" "$SLURMRESTD_URL/slurmdb/$V/jobs"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" errors:", d.get("errors"), "jobs:", len(d.get("jobs") or []))' "$D/bad.json"
echo "-- wrong token, /slurm/$V/ping:"; curl -s -o /dev/null -w 'HTTP %{http_code}\n' -H "X-SLURM-USER-NAME: root" -H "X-SLURM-USER-TOKEN: ${T%?}x" "$SLURMRESTD_URL/slurm/$V/ping"
echo "-- unix socket, local auth:"; curl -s -o /dev/null -w 'HTTP %{http_code}\n' --unix-socket "$SLURMRESTD_SOCKET" http://localhost/slurmdb/$V/jobs
echo "### sreport before rollup (current hour not rolled up yet)"
H=$(date +%Y-%m-%dT%H:00:00); $X sreport -t seconds -nP cluster AccountUtilizationByUser --tres=cpu,gres/gpu,billing start=$H end=$(date -d "$H 1 hour" +%FT%T) | wc -l
echo "### rollup"
s=$(date +%s.%N); read -r FROM TO < <($J "$D" rollup 2>/dev/null); [[ -n ${TO:-} ]] || fail rollup; echo "rollup printed: $FROM $TO ($(el "$s") s)"
$X sreport -t seconds -P cluster AccountUtilizationByUser --tres=cpu,gres/gpu,billing start=$FROM end=$TO | tee "$D/sreport.txt"
grep -q '^jeanzay|a0160701234|bob||gres/gpu|[1-9]' "$D/sreport.txt" || fail "sreport has no gpu usage"
echo "### stop"
s=$(date +%s.%N); bash $S/stop.sh "$D" 2>&1 | tr '\n' ';'; echo " ($(el "$s") s)"
sleep 3
left=$( (grep -lzF "SLURM_LAB_OWNER=$D" /proc/[0-9]*/environ 2>/dev/null; grep -l -- "$D" /proc/[0-9]*/cmdline 2>/dev/null; for f in $(grep -lx slurmstepd /proc/[0-9]*/comm 2>/dev/null); do ls -l ${f%comm}fd 2>/dev/null | grep -q "$D" && echo $f; done) | grep -v "^/proc/$$/" | sort -u)
for p in $(cat $D/pids/*.pid 2>/dev/null | cut -d" " -f1); do [ -d /proc/$p ] && left+=" pid:$p"; done
[ -z "$left" ] && echo "no process of $D left (marker, cmdline, slurmstepd fds, recorded pids)" || { echo "LEFT: $left"; fail "processes left"; }
bash $S/stop.sh "$D" --purge 2>/dev/null && echo "second stop (--purge): rc=0"
echo "SELFTEST OK"
