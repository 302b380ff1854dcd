#!/usr/bin/env bash
# start.sh [--release trixie|forky | --root ROOT] DIR -- start a real single-node Slurm
# cluster with accounting (munged, MariaDB, slurmdbd, slurmctld, slurmd, 2x slurmrestd) on
# 127.0.0.1, all state under DIR, no systemd.
# Then: source DIR/env.sh.  Stop with stop.sh DIR.  Submit jobs with jobs.sh DIR.
#   (no option)       Slurm 22.05 from this machine's Debian bookworm packages (installed if missing)
#   --root ROOT       the Slurm of a Debian root made by root.sh: every daemon and client runs
#                     chrooted in ROOT through inroot.sh (DIR/inroot.sh CMD... for your own)
#   --release REL     the same, with ROOT=$(root.sh REL): trixie (24.11) or forky (26.05)
# A restart of DIR keeps the kind of lab it was started with (DIR/root).
#
# Knobs (environment, all optional):
#   SLURM_LAB_CLUSTER   cluster name (jeanzay)
#   SLURM_LAB_CPUS      CPUs the node pretends to have (16; SlurmdParameters=config_overrides)
#   SLURM_LAB_GPUS      fake GPUs (4)
#   SLURM_LAB_WATCH_PID stop the lab automatically when this PID exits (e.g. the test runner)
#   SLURM_LAB_KEEP_ON_FAILURE=1  leave the daemons running if start fails (default: stop them)
# Must run as root (Debian bookworm).  Works with no TTY and no stdin.
set -euo pipefail
exec </dev/null
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
want_root=""
while (($#)); do
  case $1 in
    --root)    want_root=$(cd "${2:?--root needs a directory}" && pwd -P) || die "no root $2"; shift 2 ;;
    --release) want_root=$(bash "$SLURM_LAB_SCRIPTS/root.sh" "${2:?--release needs trixie or forky}") \
                 || die "root.sh $2 failed"; shift 2 ;;
    --) shift; break ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done
lab_init "${1:-}"
if [[ -n $want_root ]]; then
  [[ -z $ROOT || $ROOT == "$want_root" ]] || die "$LAB was started with root $ROOT, not $want_root"
  [[ -e $want_root/.allocwatch-root ]] || die "$want_root is not a root made by root.sh"
  echo "$want_root" > "$LAB/root"; ROOT=$want_root; lab_use_root
fi
cd "$LAB"   # daemons inherit the cwd: never pin the caller's directory

CPUS=${SLURM_LAB_CPUS:-16}
NGPUS=${SLURM_LAB_GPUS:-4}
DB_PASS=slurmlab
PKGS=(slurmctld slurmd slurmdbd slurm-client slurmrestd slurm-wlm-jwt-plugin munge mariadb-server
      faketime curl)

(( EUID == 0 )) || die "start.sh must run as root"
(( CPUS >= 2 && CPUS % 2 == 0 )) || die "SLURM_LAB_CPUS must be an even number >= 2"

mkdir -p "$PIDS" "$LOG"
# refuse to start twice on the same DIR
running=()
for d in "${DAEMONS[@]}"; do alive "$d" && running+=("$d"); done
if ((${#running[@]})); then
  if ((${#running[@]} == ${#DAEMONS[@]})); then
    log "already running in $LAB (${running[*]}); nothing to do"; exit 0
  fi
  die "partly running in $LAB (${running[*]}): run stop.sh $LAB first"
fi

on_exit() {
  local rc=$?
  if ((rc != 0)) && [[ ${SLURM_LAB_KEEP_ON_FAILURE:-0} != 1 ]]; then
    log "start failed (exit $rc): stopping what was started (SLURM_LAB_KEEP_ON_FAILURE=1 keeps it)"
    bash "$SLURM_LAB_SCRIPTS/stop.sh" "$LAB" >&2 || true
  fi
}
trap on_exit EXIT

printf '%-18s %8s %10s\n' phase "this phase" cumulative > "$LAB/timings.txt"

# ------------------------------------------------------------------ install
if [[ -n $ROOT ]]; then
  # everything is in the root; the host only needs curl and python3 (ports, readiness)
  for c in curl python3 unshare chroot setsid; do command -v "$c" >/dev/null || die "$c is needed on the host"; done
  mkdir -p "$ROOT$LAB"      # inroot.sh binds DIR here
  for u in "${JOB_USERS[@]}" "$REST_USER"; do
    "${RX[@]}" /bin/sh -c "id -u $u >/dev/null 2>&1 || useradd --system --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin $u" || die "could not create user $u in $ROOT"
  done
  log "root $ROOT: $(grep -h '^slurm=' "$ROOT/.allocwatch-root")"
else
missing=()
status=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PKGS[@]}" 2>/dev/null || true)
for p in "${PKGS[@]}"; do grep -q "^$p ii" <<<"$status" || missing+=("$p"); done
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  APT=(apt-get -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confold -q)
  export DEBIAN_FRONTEND=noninteractive
  guard=0
  # package postinsts must not start mariadb/munge/slurm services
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; guard=1
  fi
  ok=0
  for i in 1 2 3 4 5 6; do   # another apt may hold the lists lock
    if "${APT[@]}" update > "$LAB/apt.log" 2>&1; then ok=1; break; fi
    log "apt-get update failed (try $i), retrying in 10s"; sleep 10
  done
  ((ok)) || { ((guard)) && rm -f /usr/sbin/policy-rc.d; die "apt-get update failed" "$LAB/apt.log"; }
  if ! "${APT[@]}" install -y --no-install-recommends "${missing[@]}" >> "$LAB/apt.log" 2>&1; then
    ((guard)) && rm -f /usr/sbin/policy-rc.d
    die "apt-get install failed" "$LAB/apt.log"
  fi
  ((guard)) && rm -f /usr/sbin/policy-rc.d
else
  log "packages already installed"
fi
for u in "${JOB_USERS[@]}" "$REST_USER"; do
  id -u "$u" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin "$u" 2>/dev/null || id -u "$u" >/dev/null 2>&1 \
    || die "could not create user $u"
done
fi
SLURM_VERSION=$(slurmd -V 2>/dev/null | awk '{print $2}')
[[ $SLURM_VERSION =~ ^([0-9]+)\.([0-9]+) ]] || die "cannot read the Slurm version (slurmd -V)"
SLURM_MAJOR=$(( 10#${BASH_REMATCH[1]} * 100 + 10#${BASH_REMATCH[2]} ))   # 22.05 -> 2205
log "Slurm $SLURM_VERSION"
mark install

# -------------------------------------------------------------------- ports
# Free loopback ports, below the ephemeral range so that no outgoing connection
# grabs one between picking and binding.  Reused on a restart of the same DIR
# when still free.
pick_ports() {
  python3 - "$@" <<'EOF'
import random, socket, sys
want = ["CTLD", "SLURMD", "DBD", "REST", "DB"]
old = dict(a.split("=", 1) for a in sys.argv[1:])
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
got = {}
for k in want:
    p = int(old.get(k, 0) or 0)
    if not (p and p not in got.values() and free(p)):
        while True:
            p = random.randrange(20000, 32000)
            if p not in got.values() and free(p): break
    got[k] = p
for k in want:
    print(f"PORT_{k}={got[k]}")
EOF
}
old_ports=()
if [[ -s $LAB/ports.env ]]; then
  while IFS='=' read -r k v; do old_ports+=("${k#PORT_}=$v"); done < "$LAB/ports.env"
fi
command -v python3 >/dev/null || die "python3 is needed to pick free ports"
pick_ports "${old_ports[@]}" > "$LAB/ports.env"
source "$LAB/ports.env"
log "ports: ctld=$PORT_CTLD slurmd=$PORT_SLURMD dbd=$PORT_DBD rest=$PORT_REST mariadb=$PORT_DB"

# ------------------------------------------------------------------ configs
mkdir -p "$ETC" "$RUN/rest" "$VAR/spool/ctld" "$VAR/spool/d" "$VAR/mysql" "$VAR/munge" \
         "$VAR/fakedev" "$VAR/jobs"
# job users and slurmrestd's user need to traverse DIR (mktemp -d makes it 0700)
chmod 755 "$LAB" "$VAR" "$RUN" "$LOG"; chmod 711 "$ETC"; chmod 700 "$VAR/munge"; chmod 1777 "$VAR/jobs"
chown "$("${RX[@]}" id -u "$REST_USER"):$("${RX[@]}" id -g "$REST_USER")" "$RUN/rest"        # slurmrestd (non-root) creates its socket here
(( ${#RUN} + 20 < 108 )) || die "DIR path too long for unix sockets: $RUN"
[[ -s $ETC/munge.key ]]     || dd if=/dev/urandom of="$ETC/munge.key" bs=1024 count=1 status=none
[[ -s $ETC/jwt_hs256.key ]] || dd if=/dev/urandom of="$ETC/jwt_hs256.key" bs=32 count=1 status=none
chmod 600 "$ETC/munge.key" "$ETC/jwt_hs256.key"
[[ -s $LAB/started_at ]] || date +%s > "$LAB/started_at"

# fake GPUs: gres/gpu drops File-less GPUs and wants character devices
for ((i = 0; i < NGPUS; i++)); do
  [[ -e $VAR/fakedev/nvidia$i ]] || mknod -m 666 "$VAR/fakedev/nvidia$i" c 195 "$i" 2>/dev/null \
    || touch "$VAR/fakedev/nvidia$i"   # a plain file works too (slurmd logs an error)
done

HOST=$(hostname -s 2>/dev/null || uname -n); HOST=${HOST%%.*}
MEM=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
[[ -n $MEM ]] || MEM=$(( $(awk '/^MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
HW="CPUs=$CPUS Boards=1 SocketsPerBoard=2 CoresPerSocket=$((CPUS / 2)) ThreadsPerCore=1 RealMemory=$MEM"
GRES=""; GRESCONF="AutoDetect=off"
if ((NGPUS > 0)); then
  GRES="Gres=gpu:$NGPUS"
  GRESCONF+=$'\n'"NodeName=$HOST Name=gpu File=$VAR/fakedev/nvidia[0-$((NGPUS - 1))]"
fi

cat > "$ETC/slurm.conf" <<EOF
# generated by tests/infra/slurm/start.sh
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$PORT_CTLD
SlurmdPort=$PORT_SLURMD
AuthType=auth/munge
# cred_expire (default 120 s) is also how long a requeued job must wait before it may start again
AuthInfo=socket=$RUN/munge.socket,cred_expire=10
CredType=cred/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$ETC/jwt_hs256.key
StateSaveLocation=$VAR/spool/ctld
SlurmdSpoolDir=$VAR/spool/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
PriorityType=priority/multifactor
PriorityWeightFairshare=1000
JobRequeue=1
MaxArraySize=1001
ReturnToService=2
MinJobAge=300
KillWait=5
InactiveLimit=0
Waittime=0
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$PORT_DBD
# For slurmdbd connections the munge socket is taken from here, NOT from AuthInfo:
AccountingStoragePass=$RUN/munge.socket
AccountingStorageEnforce=associations,limits,qos
AccountingStorageTRES=gres/gpu,billing
GresTypes=gpu
SlurmdParameters=config_overrides
NodeName=$HOST NodeAddr=127.0.0.1 $HW $GRES State=UNKNOWN
PartitionName=cpu_p1 Nodes=ALL Default=YES MaxTime=INFINITE State=UP TRESBillingWeights="CPU=1.0"
PartitionName=gpu_p13 Nodes=ALL Default=NO MaxTime=INFINITE State=UP TRESBillingWeights="CPU=0.25,GRES/gpu=4.0"
PartitionName=cpu_bill Nodes=ALL Default=NO MaxTime=INFINITE State=UP TRESBillingWeights="CPU=2.0"
EOF
printf '%s\n' "$GRESCONF" > "$ETC/gres.conf"
if ((SLURM_MAJOR >= 2405)); then
  # Newer slurmd loads a cgroup plugin even with proctrack/linuxproc and task/none, and fails
  # in a root ("No filesystem mounted on /sys/fs/cgroup"); 'disabled' exists since 24.05.
  printf '# generated by tests/infra/slurm/start.sh\nCgroupPlugin=disabled\n' > "$ETC/cgroup.conf"
  chmod 644 "$ETC/cgroup.conf"
fi
( umask 077; cat > "$ETC/slurmdbd.conf" <<EOF
# generated by tests/infra/slurm/start.sh (must be mode 600, owned by SlurmUser)
AuthType=auth/munge
AuthInfo=socket=$RUN/munge.socket
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$ETC/jwt_hs256.key
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$PORT_DBD
SlurmUser=root
DebugLevel=info
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$PORT_DB
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
)
chmod 644 "$ETC/slurm.conf" "$ETC/gres.conf"   # clients read slurm.conf as any user

cat > "$LAB/token.sh" <<EOF
#!/bin/sh
# token.sh [USER [LIFESPAN_SECONDS]] -- print a JWT for slurmrestd (header X-SLURM-USER-TOKEN,
# with X-SLURM-USER-NAME: USER).  Run as root.
SLURM_CONF='$ETC/slurm.conf' exec ${RX[*]} scontrol token username="\${1:-root}" lifespan="\${2:-3600}" </dev/null | sed 's/^SLURM_JWT=//'
EOF
chmod 755 "$LAB/token.sh"
cat > "$LAB/inroot.sh" <<EOF
#!/bin/sh
# inroot.sh CMD [ARGS...] -- run a Slurm/munge/MariaDB program of this lab (the Debian root's,
# chrooted, for a lab started with --root; the host's otherwise), with SLURM_CONF set.
exec '$SLURM_LAB_SCRIPTS/inroot.sh' '$LAB' "\$@"
EOF
chmod 755 "$LAB/inroot.sh"
mark configs

# ------------------------------------------------------------------ daemons
rm -f "$RUN/munge.socket" "$RUN/munge.socket.lock"
start_bg munged "${RX[@]}" munged -F --socket="$RUN/munge.socket" --key-file="$ETC/munge.key" \
  --log-file="$LOG/munged.log" --pid-file="$RUN/munged.pid" --seed-file="$VAR/munge/munged.seed"
munge_ok() { munge -S "$RUN/munge.socket" -n | unmunge -S "$RUN/munge.socket"; }
wait_up 20 munged "$LOG/munged.log" munge_ok
mark munged

if [[ ! -d $VAR/mysql/mysql ]]; then
  mariadb-install-db --no-defaults --user=root --datadir="$VAR/mysql" \
    --auth-root-authentication-method=socket --skip-test-db --skip-name-resolve \
    --innodb-log-file-size=32M > "$LOG/mariadb-install.log" 2>&1 \
    || die "mariadb-install-db failed" "$LOG/mariadb-install.log"
fi
start_bg mariadbd "${RX[@]}" mariadbd --no-defaults --user=root --datadir="$VAR/mysql" \
  --socket="$RUN/mysqld.sock" --port="$PORT_DB" --bind-address=127.0.0.1 --skip-name-resolve \
  --pid-file="$RUN/mariadbd.pid" --log-error="$LOG/mariadbd.log" \
  --innodb-log-file-size=32M --innodb-buffer-pool-size=512M \
  --innodb-lock-wait-timeout=900 --max-allowed-packet=64M --loose-innodb-snapshot-isolation=OFF
# innodb_snapshot_isolation (MariaDB 11.8, trixie and forky, on by default) makes slurmdbd
# die on the first write conflict (rollup vs job records, "Set innodb_snapshot_isolation=OFF");
# `loose-` lets bookworm's 10.11, which lacks the option, ignore it.
wait_up 60 mariadbd "$LOG/mariadbd.log" mariadb-admin --no-defaults -S "$RUN/mysqld.sock" -uroot ping
MYSQL -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
  CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || die "mariadb setup failed" "$LOG/mariadbd.log"
mark mariadb

start_slurmdbd
mark slurmdbd

# Accounts.  Slurm lower-cases account names.  Batched: each sacctmgr add costs ~0.5 s.
# -i: never prompt (otherwise a 30 s "commit changes?" prompt).
ACCOUNTS=(a0150612345 a0160701234 abc orphanacct)
have=$(sacctmgr -n -P show assoc format=cluster,account,user)
grep -q "^$CLUSTER|" <<<"$have" || sacctmgr -i add cluster "$CLUSTER" >/dev/null \
  || die "sacctmgr add cluster failed" "$LOG/slurmdbd.log"
grep -q "^$CLUSTER|orphanacct|$" <<<"$have" || sacctmgr -i add account "$(IFS=,; echo "${ACCOUNTS[*]}")" \
  Cluster="$CLUSTER" Description="allocwatch test account" Organization=genci >/dev/null \
  || die "sacctmgr add account failed" "$LOG/slurmdbd.log"
grep -q "^$CLUSTER|orphanacct|bob$" <<<"$have" || sacctmgr -i add user "$(IFS=,; echo "${JOB_USERS[*]}")" \
  Account="$(IFS=,; echo "${ACCOUNTS[*]}")" DefaultAccount="${ACCOUNTS[0]}" Cluster="$CLUSTER" >/dev/null \
  || die "sacctmgr add user failed" "$LOG/slurmdbd.log"
mark accounts

ctld_ready() { scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_state() { sinfo -h -N -o '%T' 2>/dev/null; }
start_bg slurmctld "${RX[@]}" slurmctld -D -i
wait_up 60 slurmctld "$LOG/slurmctld.log" ctld_ready
start_bg slurmd "${RX[@]}" slurmd -D
end=$(( $(date +%s) + 60 ))
until node_state | grep -qE '^(idle|mixed|allocated|completing)'; do
  alive slurmd || die "slurmd exited during startup" "$LOG/slurmd.out" "$LOG/slurmd.log"
  alive slurmctld || die "slurmctld exited" "$LOG/slurmctld.out" "$LOG/slurmctld.log"
  # a node drained by an earlier bad config stays drained in the state files
  node_state | grep -qE 'drain|down|inval' && scontrol update nodename="$HOST" state=resume >/dev/null 2>&1
  (( $(date +%s) < end )) || { sinfo -N -R >&2; die "node never became idle" "$LOG/slurmctld.log" "$LOG/slurmd.log"; }
  sleep 0.2
done
gpu_tres() { sacctmgr -n -P show tres format=type,name | grep -qx 'gres|gpu'; }
((NGPUS == 0)) || wait_up 30 slurmctld "$LOG/slurmctld.log" gpu_tres
mark slurmctld+slurmd

# slurmrestd refuses to run as root (and as SlurmUser): run it as $REST_USER via
# setpriv (which execs, so the recorded pid is slurmrestd itself).
#  1) TCP + JWT: needs slurm-wlm-jwt-plugin, AuthAltTypes=auth/jwt in BOTH confs and
#     SLURM_JWT=daemon in slurmrestd's environment (else every token gets a 401).
#  2) unix socket + rest_auth/local (peer must be root or $REST_USER; no token).
#     JWT and local auth do not mix in one process.
#  22.05 needs its versioned openapi plugins named; later releases (checked: 24.11, 26.05)
#  load every openapi plugin and every data_parser version they have when -s/-d are not given.
SETPRIV=(setpriv --reuid="$REST_USER" --regid="$REST_USER" --init-groups)
REST_PLUGINS=(); ((SLURM_MAJOR >= 2302)) || REST_PLUGINS=(-s openapi/v0.0.38,openapi/dbv0.0.38)
start_bg slurmrestd-jwt "${RX[@]}" env SLURM_JWT=daemon "${SETPRIV[@]}" \
  slurmrestd -a rest_auth/jwt "${REST_PLUGINS[@]}" "127.0.0.1:$PORT_REST"
start_bg slurmrestd-local "${RX[@]}" "${SETPRIV[@]}" \
  slurmrestd -a rest_auth/local "${REST_PLUGINS[@]}" "unix:$RUN/rest/slurmrestd.sock"
wait_up 20 slurmrestd-jwt "" curl -s -o /dev/null "http://127.0.0.1:$PORT_REST/openapi"
wait_up 20 slurmrestd-local "" curl -s -o /dev/null --unix-socket "$RUN/rest/slurmrestd.sock" http://localhost/openapi
# the REST versions served: the v0.0.X in the paths of the OpenAPI document
REST_VERSIONS=$(curl -s --unix-socket "$RUN/rest/slurmrestd.sock" http://localhost/openapi/v3 | python3 -c '
import json, re, sys
try: paths = json.load(sys.stdin).get("paths", {})
except Exception: paths = {}
print(" ".join(sorted({m for p in paths for m in re.findall(r"/(v\d+\.\d+\.\d+)/", p)},
                      key=lambda v: [int(x) for x in v[1:].split(".")])))' || true)
[[ -n $REST_VERSIONS ]] || ((SLURM_MAJOR >= 2302)) || REST_VERSIONS=v0.0.38
log "REST versions: ${REST_VERSIONS:-none found}"
mark slurmrestd

# ---------------------------------------------------------------- watchdog
if [[ -n ${SLURM_LAB_WATCH_PID:-} ]]; then
  # (env -u: stop.sh must not carry the lab marker itself, see its step 3)
  start_bg watchdog bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 2; done
    exec env -u SLURM_LAB_OWNER bash "$2/stop.sh" "$3"' \
    watchdog "$SLURM_LAB_WATCH_PID" "$SLURM_LAB_SCRIPTS" "$LAB"
fi

cat > "$LAB/env.sh" <<EOF
# generated by tests/infra/slurm/start.sh -- source me
export SLURM_LAB_DIR='$LAB'
export SLURM_LAB_CLUSTER='$CLUSTER'
export SLURM_CONF='$ETC/slurm.conf'
export SLURMRESTD_URL='http://127.0.0.1:$PORT_REST'
export SLURMRESTD_SOCKET='$RUN/rest/slurmrestd.sock'
export SLURM_LAB_TOKEN_CMD='$LAB/token.sh'      # \$SLURM_LAB_TOKEN_CMD USER [LIFESPAN] -> JWT on stdout
export SLURM_LAB_JWT_KEY='$ETC/jwt_hs256.key'   # HS256 key, to mint JWTs without scontrol
export SLURM_LAB_JOBS='$SLURM_LAB_SCRIPTS/jobs.sh'
export SLURM_LAB_HOST='$HOST'
export SLURM_LAB_CPUS=$CPUS
export SLURM_LAB_GPUS=$NGPUS
export SLURM_LAB_STARTED_AT=$(cat "$LAB/started_at")
export SLURM_LAB_MYSQL_SOCKET='$RUN/mysqld.sock'
export SLURM_LAB_PORT_CTLD=$PORT_CTLD SLURM_LAB_PORT_SLURMD=$PORT_SLURMD SLURM_LAB_PORT_DBD=$PORT_DBD
export SLURM_LAB_PORT_REST=$PORT_REST SLURM_LAB_PORT_DB=$PORT_DB
export SLURM_LAB_ROOT='$ROOT'                   # empty: the host's Slurm
export SLURM_LAB_INROOT='$LAB/inroot.sh'        # \$SLURM_LAB_INROOT sacct ... runs this lab's sacct
export SLURM_LAB_SLURM_VERSION='$SLURM_VERSION'
export SLURM_LAB_REST_VERSIONS='$REST_VERSIONS'  # data-parser versions slurmrestd serves
EOF
trap - EXIT
log "READY: source $LAB/env.sh"
cat "$LAB/timings.txt" >&2
