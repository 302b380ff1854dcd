#!/usr/bin/env bash
# selftest.sh -- end-to-end smoke test of start.sh / jobs.sh / stop.sh (run as root):
# fresh lab in a temp dir, one job of each kind, wait-idle, sacct, REST (with a good,
# missing and wrong JWT), rollup + sreport, stop, check that no process is left, purge.
# Prints a transcript; exits non-zero if a step fails.
set -uo pipefail
S=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
D=$(mktemp -d)
el() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
fail() { echo "SELFTEST FAILED: $*"; bash "$S/stop.sh" "$D" >/dev/null 2>&1; exit 1; }
echo "### start.sh $D"
s=$(date +%s.%N); bash $S/start.sh "$D" </dev/null 2>"$D.start.log" || { cat "$D.start.log"; rm -f "$D.start.log"; fail start.sh; }
sed -n '/^phase/,$p' "$D.start.log"; rm -f "$D.start.log"; echo "start.sh wall: $(el "$s") s"
source "$D/env.sh"; J="$SLURM_LAB_JOBS"
echo "### env"; env | grep -E '^SLURM(_LAB|_CONF|RESTD)' | sort
echo "### submit (one of each)"
for args in "cpu A0150612345 2 3" "gpu a0160701234 2 3 bob" "bill abc 3 2" "array a0150612345 0-3 2 bob" \
            "fail orphanacct" "pending-cancel a0160701234" "eligible-cancel abc bob" "long abc 6 bob" "requeue a0150612345 3"; do
  s=$(date +%s.%N); id=$($J "$D" $args) || fail "jobs.sh $args"; [[ $args == pending-cancel* ]] && held=$id; printf '%-32s -> %-4s (%.1f s)\n' "$args" "$id" "$(el "$s")"
done
s=$(date +%s.%N); $J "$D" wait-idle || fail wait-idle; echo "wait-idle rc=$? ($(el "$s") s)"
echo "### sacct"
SLURM_TIME_FORMAT=%s sacct -a -X -D -P --noconvert -S 2026-01-01 --format=JobIDRaw,JobID,Cluster,Partition,Account,User,Start,End,ElapsedRaw,AllocCPUS,AllocTRES,State
echo "### sacct -j <pending-cancel id> (never eligible, absent above)"
SLURM_TIME_FORMAT=%s sacct -a -X -P --noconvert -j "$held" --format=JobIDRaw,Partition,Account,User,Eligible,Start,End,ElapsedRaw,State
echo "### REST"
T=$($SLURM_LAB_TOKEN_CMD root 600)
curl -s -w '\nHTTP %{http_code}\n' -H "X-SLURM-USER-NAME: root" -H "X-SLURM-USER-TOKEN: $T" "$SLURMRESTD_URL/slurmdb/v0.0.38/jobs?start_time=2026-01-01" > "$D/rest.out"
tail -1 "$D/rest.out"; grep -q '^HTTP 200$' "$D/rest.out" || fail "REST with JWT"; head -n -1 "$D/rest.out" | python3 -c '
import json,sys; d=json.load(sys.stdin); print("errors:", d["errors"], "jobs:", len(d["jobs"]))
for j in d["jobs"]:
  print(j["job_id"], j["partition"], j["account"], j["user"], j["state"]["current"], j["time"]["start"], j["time"]["end"], j["time"]["elapsed"],
        ",".join("%s=%s" % (t["type"] + ("/" + t["name"] if t.get("name") else ""), t["count"]) for t in j["tres"]["allocated"] if t["count"] is not None))'
echo "-- no token:";    code=$(curl -s -o /dev/null -w '%{http_code}' "$SLURMRESTD_URL/slurmdb/v0.0.38/jobs"); echo "HTTP $code"; [[ $code == 401 ]] || fail "no token gave $code"
echo "-- wrong token:"; curl -s -o "$D/bad.json" -w 'HTTP %{http_code}' -H "X-SLURM-USER-NAME: root" -H "X-SLURM-USER-TOKEN: ${T%?}x" "$SLURMRESTD_URL/slurmdb/v0.0.38/jobs"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(" errors:", d["errors"], "jobs:", len(d["jobs"]))' "$D/bad.json"
echo "-- wrong token, /slurm/v0.0.38/ping:"; curl -s -o /dev/null -w 'HTTP %{http_code}\n' -H "X-SLURM-USER-NAME: root" -H "X-SLURM-USER-TOKEN: ${T%?}x" "$SLURMRESTD_URL/slurm/v0.0.38/ping"
echo "-- unix socket, local auth:"; curl -s -o /dev/null -w 'HTTP %{http_code}\n' --unix-socket "$SLURMRESTD_SOCKET" http://localhost/slurmdb/v0.0.38/jobs
echo "### sreport before rollup (current hour not rolled up yet)"
H=$(date +%Y-%m-%dT%H:00:00); sreport -t seconds -nP cluster AccountUtilizationByUser --tres=cpu,gres/gpu,billing start=$H end=$(date -d "$H 1 hour" +%FT%T) | wc -l
echo "### rollup"
s=$(date +%s.%N); read -r FROM TO < <($J "$D" rollup 2>/dev/null); [[ -n ${TO:-} ]] || fail rollup; echo "rollup printed: $FROM $TO ($(el "$s") s)"
sreport -t seconds -P cluster AccountUtilizationByUser --tres=cpu,gres/gpu,billing start=$FROM end=$TO | tee "$D/sreport.txt"
grep -q '^jeanzay|a0160701234|bob||gres/gpu|[1-9]' "$D/sreport.txt" || fail "sreport has no gpu usage"
echo "### stop"
s=$(date +%s.%N); bash $S/stop.sh "$D" 2>&1 | tr '\n' ';'; echo " ($(el "$s") s)"
sleep 3
left=$( (grep -lzF "SLURM_LAB_OWNER=$D" /proc/[0-9]*/environ 2>/dev/null; grep -l -- "$D" /proc/[0-9]*/cmdline 2>/dev/null; for f in $(grep -lx slurmstepd /proc/[0-9]*/comm 2>/dev/null); do ls -l ${f%comm}fd 2>/dev/null | grep -q "$D" && echo $f; done) | grep -v "^/proc/$$/" | sort -u)
for p in $(cat $D/pids/*.pid 2>/dev/null | cut -d" " -f1); do [ -d /proc/$p ] && left+=" pid:$p"; done
[ -z "$left" ] && echo "no process of $D left (marker, cmdline, slurmstepd fds, recorded pids)" || { echo "LEFT: $left"; fail "processes left"; }
bash $S/stop.sh "$D" --purge 2>/dev/null && echo "second stop (--purge): rc=0"
echo "SELFTEST OK"
