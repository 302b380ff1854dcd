#!/usr/bin/env bash
# Start the real servers allocwatch's integration tests talk to, on 127.0.0.1
# and free ports, in the background.  See README.md beside this file.
#
#   start.sh DIR [--only LIST]
#
# LIST is comma-separated: vm, influxd, proxy, smtp, smtpauth, smtps, smtpstrict, am,
# or the groups influx1 (= influxd,proxy), mail (= smtp,smtpauth,smtps,smtpstrict),
# all (the default).
#
# Installs missing Debian packages, then for each server: reuses the port in
# DIR/ports/NAME if there is one (so a server stopped with `stop.sh DIR --only
# NAME` comes back on the SAME port), else picks a free one; starts it with its
# log in DIR/logs/NAME.log and its PID in DIR/pids/NAME; waits until it really
# answers (bounded by $AW_START_TIMEOUT seconds, default 30) and fails loudly
# with the log tail otherwise; finally writes DIR/env.sh (sourceable) and
# DIR/env.list (plain KEY=VALUE lines) describing every server known in DIR.
# A server that is already running is left alone.  Safe to run again.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=_lib.sh
source "$HERE/_lib.sh"

usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

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
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
aw_expand_units "$ONLY" > /dev/null   # dies here on an unknown name
mapfile -t UNITS < <(aw_expand_units "$ONLY")
[[ ${#UNITS[@]} -gt 0 ]] || aw_die "nothing selected by --only '$ONLY'"

TIMEOUT=${AW_START_TIMEOUT:-30}
INFLUX_DB=allocwatch
INFLUX_ORG=allocwatch
SMTP_AUTH_USER=allocwatch-test

T_SCRIPT0=$(date +%s.%N)
aw_lock "$DIR"
mkdir -p "$DIR/logs" "$DIR/pids" "$DIR/ports" "$DIR/conf"

# ---------------------------------------------------------------- install
has_unit() { local u; for u in "${UNITS[@]}"; do [[ "$u" == "$1" ]] && return 0; done; return 1; }

missing_pkgs() {
    command -v curl >/dev/null || echo curl
    command -v flock >/dev/null || echo util-linux
    [[ -x "$AW_PY" ]] || echo python3
    if has_unit vm; then command -v victoria-metrics >/dev/null || echo victoria-metrics; fi
    if has_unit influxd; then command -v influxd >/dev/null || echo influxdb; fi
    if has_unit am; then command -v prometheus-alertmanager >/dev/null || echo prometheus-alertmanager; fi
    if has_unit smtp || has_unit smtpauth || has_unit smtps || has_unit smtpstrict; then
        { [[ -x "$AW_PY" ]] && "$AW_PY" -c 'import aiosmtpd' 2>/dev/null; } || echo python3-aiosmtpd
    fi
    if has_unit smtpauth || has_unit smtps || has_unit smtpstrict; then command -v openssl >/dev/null || echo openssl; fi
    return 0
}

install_pkgs() {
    local pkgs=("$@") made_policy=0 rc=0
    aw_log "installing Debian packages: ${pkgs[*]}"
    # Keep the packages' maintainer scripts from starting their own daemons on the
    # default ports (8086/8088, 8428, 9093/9094): no systemd here, but sysv scripts
    # would run.  Only if nobody has a policy already; removed again afterwards.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
    fi
    local apt=(apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends)
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" "${pkgs[@]}" > "$DIR/logs/apt.log" 2>&1; then
        aw_log "install failed; running apt-get update once and retrying"
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update >> "$DIR/logs/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" "${pkgs[@]}" >> "$DIR/logs/apt.log" 2>&1 || rc=$?
    fi
    [[ $made_policy == 1 ]] && rm -f /usr/sbin/policy-rc.d
    if [[ $rc != 0 ]]; then
        tail -n 30 "$DIR/logs/apt.log" >&2
        aw_die "apt-get install ${pkgs[*]} failed (log: $DIR/logs/apt.log)"
    fi
}

mapfile -t MISSING < <(missing_pkgs)
if [[ ${#MISSING[@]} -gt 0 ]]; then
    T_APT0=$(date +%s.%N)
    install_pkgs "${MISSING[@]}"
    aw_log "installed in $(awk -v a="$T_APT0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
    mapfile -t STILL < <(missing_pkgs)
    [[ ${#STILL[@]} -eq 0 ]] || aw_die "still missing after install: ${STILL[*]}"
fi

# ---------------------------------------------------------------- secrets
SECRETS="$DIR/conf/secrets.env"
if [[ ! -s "$SECRETS" ]]; then
    umask 077
    {
        echo "INFLUX_TOKEN=awtok-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
        echo "SMTP_AUTH_PASSWORD=awpw-$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n')"
    } > "$SECRETS"
    umask 022
fi
# shellcheck disable=SC1090
source "$SECRETS"

# ---------------------------------------------------------------- ports
# Ports recorded in DIR/ports/ are kept for the life of DIR.  New ones come from
# the kernel (bind to port 0), all in one go so that two are never the same.
recorded_ports() { cat "$DIR"/ports/* 2>/dev/null || true; }

pick_ports() {   # pick_ports N -> N free loopback ports, one per line
    "$AW_PY" - "$1" $(recorded_ports) <<'EOF'
import socket, sys
n, taken = int(sys.argv[1]), set(sys.argv[2:])
socks, out = [], []
while len(out) < n:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
    p = str(s.getsockname()[1])
    if p not in taken:
        out.append(p)
print("\n".join(out))
EOF
}

port_is_free() {
    "$AW_PY" -c 'import socket,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try: s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError: sys.exit(1)' "$1"
}

port_of() { cat "$DIR/ports/$1"; }

ensure_port() {   # ensure_port NAME -> DIR/ports/NAME exists
    [[ -s "$DIR/ports/$1" ]] || pick_ports 1 > "$DIR/ports/$1"
}

# ---------------------------------------------------------------- probes
http_code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true; }

smtp_banner() {   # succeeds when something on 127.0.0.1:$1 greets with 220
    local line=""
    { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    IFS= read -r -t 2 line <&3 || true
    printf 'QUIT\r\n' >&3 2>/dev/null || true
    exec 3<&- 3>&-
    [[ "$line" == 220* ]]
}

smtps_banner() {   # the same through implicit TLS, the certificate verified against the test CA
    "$AW_PY" - "$1" "$DIR/conf/tls/ca.pem" <<'EOF' 2>/dev/null
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        line = s.makefile("rb").readline()
        s.sendall(b"QUIT\r\n")
sys.exit(0 if line.startswith(b"220") else 1)
EOF
}

probe() {
    local p
    p=$(port_of "$1")
    case "$1" in
        vm) [[ "$(curl -s -m 2 "http://127.0.0.1:$p/health" 2>/dev/null || true)" == OK ]] ;;
        influxd|proxy) [[ "$(http_code "http://127.0.0.1:$p/ping")" == 204 ]] ;;
        smtp|smtpauth|smtpstrict) smtp_banner "$p" ;;
        smtps) smtps_banner "$p" ;;
        am) [[ "$(http_code "http://127.0.0.1:$p/-/ready")" == 200 ]] ;;
    esac
}

# ---------------------------------------------------------------- launch
launch() {   # launch NAME CMD... : start in its own session, fds to the log
    local unit=$1; shift
    local log="$DIR/logs/$unit.log"
    echo "=== $(date -u +%FT%TZ) start.sh: $*" >> "$log"
    (
        # close every fd beyond 0-2 (the DIR lock, and any pipe of our caller's:
        # a test harness reading our output must see EOF when start.sh exits)
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            if (( fd > 2 )); then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        cd "$DIR"
        export PYTHONUNBUFFERED=1
        exec setsid "$@" >> "$log" 2>&1 < /dev/null
    ) &
    local pid=$! st=""
    disown "$pid" 2>/dev/null || true   # no "Killed" job notices from this shell
    # record PID + start time (identifies the process even if the PID is reused later)
    for _ in 1 2 3 4 5 6 7 8 9 10; do st=$(aw_starttime "$pid") && break; sleep 0.01; done
    echo "$pid ${st:-}" > "$DIR/pids/$unit"
    STARTED+=("$unit")
    T_LAUNCH[$unit]=$(date +%s.%N)
}

make_tls() {   # a throw-away CA and a leaf for localhost/127.0.0.1 (EC P-256)
    local d="$DIR/conf/tls"
    [[ -s "$d/server.pem" ]] && return 0
    mkdir -p "$d"
    (
        cd "$d"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout ca.key -out ca.pem -days 3650 -subj "/CN=allocwatch test CA" 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
        printf '%s\n' 'basicConstraints=CA:FALSE' 'keyUsage=digitalSignature,keyEncipherment' \
            'extendedKeyUsage=serverAuth' 'subjectAltName=DNS:localhost,IP:127.0.0.1' > server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out server.pem -days 3650 -extfile server.ext 2>/dev/null
    ) || aw_die "openssl could not make the test certificates in $d"
}

start_unit() {
    local unit=$1 p pid
    if pid=$(aw_pid "$DIR" "$unit"); then
        aw_log "$unit already running (pid $pid, port $(port_of "$unit"))"
        ALREADY+=("$unit")
        return 0
    fi
    ensure_port "$unit"
    p=$(port_of "$unit")
    port_is_free "$p" || aw_die "port $p recorded for $unit in $DIR/ports/$unit is taken by another process: $(ss -ltnp "sport = :$p" 2>/dev/null | tail -n +2)"
    case "$unit" in
        vm)
            launch vm victoria-metrics -httpListenAddr="127.0.0.1:$p" \
                -storageDataPath="$DIR/data/vm" -retentionPeriod=100y \
                -search.disableCache -search.latencyOffset=0s
            ;;
        influxd)
            ensure_port influxd_rpc
            local rpc
            rpc=$(port_of influxd_rpc)
            port_is_free "$rpc" || aw_die "influxd rpc port $rpc (DIR/ports/influxd_rpc) is taken"
            cat > "$DIR/conf/influxdb.conf" <<EOF
# written by start.sh: influxd 1.6 for tests, loopback only
reporting-enabled = false
bind-address = "127.0.0.1:$rpc"
[meta]
  dir = "$DIR/data/influxdb/meta"
[data]
  dir = "$DIR/data/influxdb/data"
  wal-dir = "$DIR/data/influxdb/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:$p"
  log-enabled = true
  pprof-enabled = false
[continuous_queries]
  enabled = false
[logging]
  suppress-logo = true
EOF
            launch influxd influxd run -config "$DIR/conf/influxdb.conf"
            ;;
        proxy)
            [[ -s "$DIR/ports/influxd" ]] || aw_die "proxy needs influxd: start it first (--only influxd,proxy)"
            launch proxy "$AW_PY" "$HERE/influx_v2_proxy.py" --listen "127.0.0.1:$p" \
                --upstream "http://127.0.0.1:$(port_of influxd)" --token "$INFLUX_TOKEN"
            ;;
        smtp)
            # a complete Maildir: aiosmtpd creates tmp/new/cur only when the folder is absent
            mkdir -p "$DIR/mail/tmp" "$DIR/mail/new" "$DIR/mail/cur"
            launch smtp "$AW_PY" -m aiosmtpd -n -l "127.0.0.1:$p" -c aiosmtpd.handlers.Mailbox "$DIR/mail"
            ;;
        smtpauth)
            mkdir -p "$DIR/mail-auth/tmp" "$DIR/mail-auth/new" "$DIR/mail-auth/cur"
            make_tls
            launch smtpauth "$AW_PY" "$HERE/smtp_auth_server.py" --port "$p" --maildir "$DIR/mail-auth" \
                --user "$SMTP_AUTH_USER" --password "$SMTP_AUTH_PASSWORD" \
                --tls-cert "$DIR/conf/tls/server.pem" --tls-key "$DIR/conf/tls/server.key"
            ;;
        smtps|smtpstrict)
            # the same script, account, certificate and Maildir as smtpauth; its own port and
            # log. smtps: implicit TLS (SMTPS); smtpstrict: AUTH only after STARTTLS.
            mkdir -p "$DIR/mail-auth/tmp" "$DIR/mail-auth/new" "$DIR/mail-auth/cur"
            make_tls
            local mode=--implicit-tls
            [[ "$unit" == smtpstrict ]] && mode=--auth-require-tls
            launch "$unit" "$AW_PY" "$HERE/smtp_auth_server.py" --name "$unit" "$mode" --port "$p" \
                --maildir "$DIR/mail-auth" --user "$SMTP_AUTH_USER" --password "$SMTP_AUTH_PASSWORD" \
                --tls-cert "$DIR/conf/tls/server.pem" --tls-key "$DIR/conf/tls/server.key"
            ;;
        am)
            cat > "$DIR/conf/alertmanager.yml" <<'EOF'
# written by start.sh: accept everything, deliver nowhere
route:
  receiver: "null"
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
EOF
            launch am prometheus-alertmanager --config.file="$DIR/conf/alertmanager.yml" \
                --storage.path="$DIR/data/am" --web.listen-address="127.0.0.1:$p" \
                --cluster.listen-address= --log.level=info
            ;;
    esac
}

FAILED=()
wait_ready() {
    local unit=$1 pid deadline t_ready
    pid=$(awk '{print $1}' "$DIR/pids/$unit")
    deadline=$(( $(date +%s) + TIMEOUT ))
    while :; do
        if probe "$unit"; then break; fi
        if ! aw_pid "$DIR" "$unit" >/dev/null; then
            fail_unit "$unit" "exited during start-up"
            return 1
        fi
        if (( $(date +%s) >= deadline )); then
            kill -KILL "$pid" 2>/dev/null || true
            fail_unit "$unit" "not ready after ${TIMEOUT}s (killed)"
            return 1
        fi
        sleep 0.05
    done
    t_ready=$(date +%s.%N)
    READY_SECS[$unit]=$(awk -v a="${T_LAUNCH[$unit]}" -v b="$t_ready" 'BEGIN{printf "%.2f", b-a}')
}

fail_unit() {
    FAILED+=("$1")
    rm -f "$DIR/pids/$1"
    {
        echo "servers: ERROR: $1 $2 (port $(port_of "$1")); last lines of $DIR/logs/$1.log:"
        # this run's lines only (start.sh writes a === marker before each start)
        awk '/^=== /{n=0} {l[n++]=$0} END{for(i=(n>40?n-40:0);i<n;i++) print "    | " l[i]}' "$DIR/logs/$1.log"
    } >&2
}

create_db() {
    local out
    out=$(curl -s -m 10 -XPOST "http://127.0.0.1:$(port_of influxd)/query" \
        --data-urlencode "q=CREATE DATABASE \"$INFLUX_DB\"") || true
    [[ "$out" == *'"statement_id":0'* && "$out" != *error* ]] || {
        FAILED+=("influxd(create database)")
        aw_log "ERROR: CREATE DATABASE $INFLUX_DB failed: $out"
    }
}

declare -A T_LAUNCH=() READY_SECS=()
STARTED=() ALREADY=()
for u in "${UNITS[@]}"; do start_unit "$u"; done
for u in "${STARTED[@]}"; do wait_ready "$u" || true; done
for u in "${STARTED[@]}" "${ALREADY[@]}"; do
    if [[ "$u" == influxd ]] && aw_pid "$DIR" influxd >/dev/null; then create_db; fi
done

# ---------------------------------------------------------------- env files
write_env() {
    local lines=() p
    lines+=("AW_SERVERS_DIR=$DIR")
    if [[ -s "$DIR/ports/vm" ]]; then
        lines+=("AW_VM_URL=http://127.0.0.1:$(port_of vm)")
    fi
    if [[ -s "$DIR/ports/influxd" ]]; then
        lines+=("AW_INFLUX1_URL=http://127.0.0.1:$(port_of influxd)")
    fi
    if [[ -s "$DIR/ports/proxy" ]]; then
        lines+=("AW_INFLUX_PROXY_URL=http://127.0.0.1:$(port_of proxy)")
    fi
    if [[ -s "$DIR/ports/influxd" || -s "$DIR/ports/proxy" ]]; then
        lines+=("AW_INFLUX_TOKEN=$INFLUX_TOKEN" "AW_INFLUX_ORG=$INFLUX_ORG"
                "AW_INFLUX_DB=$INFLUX_DB" "AW_INFLUX_BUCKET=$INFLUX_DB")
    fi
    local authed=""   # any of the servers with the AUTH account (same account, Maildir, CA)
    [[ -s "$DIR/ports/smtpauth" || -s "$DIR/ports/smtps" || -s "$DIR/ports/smtpstrict" ]] && authed=1
    if [[ -s "$DIR/ports/smtp" || -n "$authed" ]]; then
        lines+=("AW_SMTP_HOST=127.0.0.1")
    fi
    if [[ -s "$DIR/ports/smtp" ]]; then
        lines+=("AW_SMTP_PORT=$(port_of smtp)" "AW_SMTP_MAILDIR=$DIR/mail")
    fi
    local unit_var
    for unit_var in smtpauth:AW_SMTP_AUTH_PORT smtps:AW_SMTP_TLS_PORT smtpstrict:AW_SMTP_STRICT_PORT; do
        if [[ -s "$DIR/ports/${unit_var%%:*}" ]]; then
            lines+=("${unit_var#*:}=$(port_of "${unit_var%%:*}")")
        fi
    done
    if [[ -n "$authed" ]]; then
        lines+=("AW_SMTP_AUTH_USER=$SMTP_AUTH_USER" "AW_SMTP_AUTH_PASSWORD=$SMTP_AUTH_PASSWORD"
                "AW_SMTP_AUTH_MAILDIR=$DIR/mail-auth" "AW_SMTP_AUTH_CA_CERT=$DIR/conf/tls/ca.pem")
    fi
    if [[ -s "$DIR/ports/am" ]]; then
        lines+=("AW_AM_URL=http://127.0.0.1:$(port_of am)")
    fi
    printf '%s\n' "${lines[@]}" > "$DIR/env.list.tmp"
    {
        echo "# written by $HERE/start.sh; source it"
        for p in "${lines[@]}"; do printf 'export %s=%q\n' "${p%%=*}" "${p#*=}"; done
    } > "$DIR/env.sh.tmp"
    mv -f "$DIR/env.list.tmp" "$DIR/env.list"
    mv -f "$DIR/env.sh.tmp" "$DIR/env.sh"
}
write_env

summary=""
for u in "${STARTED[@]}"; do
    [[ -n "${READY_SECS[$u]:-}" ]] && summary+=" $u:${READY_SECS[$u]}s@$(port_of "$u")"
done
aw_log "ready:${summary:- (nothing new)}${ALREADY[*]:+; already running: ${ALREADY[*]}}; total $(awk -v a="$T_SCRIPT0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')s; env: $DIR/env.sh"
if [[ ${#FAILED[@]} -gt 0 ]]; then
    aw_die "failed to start: ${FAILED[*]} (others left running; stop them with $HERE/stop.sh $DIR)"
fi
