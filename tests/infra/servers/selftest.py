#!/usr/bin/python3
"""End-to-end check of start.sh / stop.sh and the servers they start.

    /usr/bin/python3 tests/infra/servers/selftest.py [--keep] [DIR]

Starts everything in a fresh temporary DIR (or the given one), writes line
protocol to VictoriaMetrics and through the InfluxDB 2 proxy into influxd 1.6
and reads it back, sends mail to the four SMTP servers (plain, AUTH, SMTPS, AUTH
only after STARTTLS), posts and reads back an
Alertmanager alert, stops and restarts single servers on the same port, stops
everything and checks that no recorded process is left.  Prints one line per
check and ends with 'selftest: N passed, N failed'; exit status 1 on failure.
"""

import gzip
import http.client as httpc
import json
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
from email.message import EmailMessage

HERE = os.path.dirname(os.path.abspath(__file__))
PASSED, FAILED = [], []


def check(name, ok, detail=""):
    (PASSED if ok else FAILED).append(name)
    print("%s %s%s" % ("ok  " if ok else "FAIL", name, ("  -- " + str(detail)) if detail and not ok else ""), flush=True)
    return ok


def sh(*args, timeout=300):
    t0 = time.monotonic()
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    return r, time.monotonic() - t0


def load_env(d):
    env = {}
    with open(os.path.join(d, "env.list")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            env[k] = v
    return env


def http(method, url, body=None, headers=None, chunked=False):
    u = urllib.parse.urlsplit(url)
    c = httpc.HTTPConnection(u.hostname, u.port, timeout=10)
    path = u.path + ("?" + u.query if u.query else "")
    if chunked:
        c.putrequest(method, path)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        c.putheader("Transfer-Encoding", "chunked")
        c.endheaders()
        for i in range(0, len(body), 7):           # deliberately small chunks
            part = body[i:i + 7]
            c.send(b"%x\r\n%s\r\n" % (len(part), part))
        c.send(b"0\r\n\r\n")
    else:
        c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
        return True
    except OSError:
        return False


def recorded_pids(d):
    out = []
    pdir = os.path.join(d, "pids")
    for n in os.listdir(pdir) if os.path.isdir(pdir) else []:
        out.append(int(open(os.path.join(pdir, n)).read().split()[0]))
    return out


def running(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def vm_export(vm, match):
    http("GET", vm + "/internal/force_flush")
    st, data = http("POST", vm + "/api/v1/export", urllib.parse.urlencode({"match[]": match}).encode(),
                    {"Content-Type": "application/x-www-form-urlencoded"})
    return [json.loads(l) for l in data.decode().splitlines() if l.strip()] if st == 200 else []


def influx_query(url, db, q):
    st, data = http("GET", url + "/query?" + urllib.parse.urlencode({"db": db, "q": q, "epoch": "ns"}))
    return st, json.loads(data)


def send_mail(port, subject, login=None, starttls_ca=None, implicit_tls=None):
    """implicit_tls: an SSLContext for SMTPS (TLS from the first byte)."""
    m = EmailMessage()
    m["From"] = "allocwatch@test.invalid"
    m["To"] = "pi@test.invalid"
    m["Subject"] = subject
    m.set_content("usage drifted\n")
    if implicit_tls:
        conn = smtplib.SMTP_SSL("127.0.0.1", int(port), timeout=10, context=implicit_tls)
    else:
        conn = smtplib.SMTP("127.0.0.1", int(port), timeout=10)
    with conn as s:
        if starttls_ca:
            s.starttls(context=ssl.create_default_context(cafile=starttls_ca))
        if login:
            s.login(*login)
        s.send_message(m)


def maildir_has(d, subject):
    new = os.path.join(d, "new")
    for n in os.listdir(new) if os.path.isdir(new) else []:
        with open(os.path.join(new, n), "rb") as f:
            if ("Subject: " + subject).encode() in f.read():
                return os.path.join(new, n)
    return None


def main():
    keep = "--keep" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--keep"]
    d = args[0] if args else tempfile.mkdtemp(prefix="aw-servers-")
    start, stop = os.path.join(HERE, "start.sh"), os.path.join(HERE, "stop.sh")
    print("DIR=%s" % d, flush=True)
    try:
        run(d, start, stop)
    finally:
        sh(stop, d)
        if not keep and not args:
            shutil.rmtree(d, ignore_errors=True)
    print("selftest: %d passed, %d failed" % (len(PASSED), len(FAILED)))
    return 1 if FAILED else 0


def run(d, start, stop):
    r, secs = sh(start, d)
    if not check("start.sh all (%.2fs)" % secs, r.returncode == 0, r.stderr[-3000:]):
        return
    print("   " + r.stderr.strip().splitlines()[-1], flush=True)
    env = load_env(d)
    vm, ix, px = env["AW_VM_URL"], env["AW_INFLUX1_URL"], env["AW_INFLUX_PROXY_URL"]
    tok, db = env["AW_INFLUX_TOKEN"], env["AW_INFLUX_DB"]
    auth = {"Authorization": "Token " + tok}
    now_ns = time.time_ns()
    t_old = 1_577_836_800_000_000_000  # 2020-01-01T00:00:00Z

    # ---------------------------------------------------- VictoriaMetrics
    lp = ("aw_usage,centre=c1,project=p1,resource=cpu used_hours=12.5,pct=41.7 %d\n"
          "aw_usage,centre=c1,project=p2,resource=gpu used_hours=3i %d\n"
          "this line is malformed\n"
          "aw_old,centre=c1 v=1 %d\n" % (now_ns, now_ns, t_old)).encode()
    st, body = http("POST", vm + "/api/v2/write?org=%s&bucket=%s&precision=ns" % (env["AW_INFLUX_ORG"], db), lp, auth)
    check("vm: /api/v2/write with a malformed line -> 204 (silently drops it)", st == 204, (st, body))
    st, _ = http("POST", vm + "/api/v2/write?org=o&bucket=b", b"aw_chunked,centre=c2 v=7\n", auth, chunked=True)
    check("vm: chunked body, no precision -> 204", st == 204, st)
    st, _ = http("POST", vm + "/api/v2/write?org=o&bucket=b&precision=s", gzip.compress(b"aw_gz,centre=c3 v=8 1700000000\n"),
                 dict(auth, **{"Content-Encoding": "gzip"}))
    check("vm: gzip body, precision=s -> 204", st == 204, st)
    t0, rows = time.monotonic(), []
    while time.monotonic() - t0 < 30:
        rows = vm_export(vm, '{__name__=~"aw_.*"}')
        if len(rows) >= 6:
            break
        time.sleep(0.2)
    lag = time.monotonic() - t0
    names = sorted((r["metric"]["__name__"], r["metric"].get("project", "")) for r in rows)
    check("vm: export after force_flush sees 6 series (%.1fs after write)" % lag, len(rows) == 6, names)
    by = {(r["metric"]["__name__"], r["metric"].get("project")): r for r in rows}
    r1 = by.get(("aw_usage_used_hours", "p1"))
    check("vm: measurement_field naming, tags as labels, ms timestamps",
          r1 is not None and r1["values"] == [12.5] and r1["timestamps"] == [now_ns // 1_000_000]
          and r1["metric"] == {"__name__": "aw_usage_used_hours", "centre": "c1", "project": "p1", "resource": "cpu"}, r1)
    check("vm: past timestamp kept (retention 100y)", by.get(("aw_old_v", None), {}).get("timestamps") == [t_old // 1_000_000], by.get(("aw_old_v", None)))
    check("vm: precision=s honoured", by.get(("aw_gz_v", None), {}).get("timestamps") == [1_700_000_000_000], by.get(("aw_gz_v", None)))

    # ---------------------------------------------------- proxy -> influxd 1.6
    st, body = http("GET", px + "/health")
    check("proxy: GET /health -> 200 pass", st == 200 and json.loads(body)["status"] == "pass", (st, body))
    st, _ = http("GET", px + "/ping")
    check("proxy: GET /ping -> 204", st == 204, st)
    good = ("aw_usage,centre=c1,project=p1,resource=cpu used_hours=12.5,pct=41.7 %d\n"
            "aw_usage,centre=c1,project=p2,resource=gpu used_hours=3.0 %d\n" % (now_ns, now_ns + 1)).encode()
    st, body = http("POST", px + "/api/v2/write?org=x&bucket=%s&precision=ns" % db, good, auth)
    check("proxy: good lines -> 204", st == 204, (st, body))
    st, body = http("POST", px + "/api/v2/write?org=x&bucket=%s&precision=ns" % db, b"aw_bad,centre=c1 used_hours= 1\n", auth)
    j = json.loads(body or b"{}")
    check("proxy: malformed line -> 400 with parser message", st == 400 and j.get("code") == "invalid" and "unable to parse" in j.get("message", ""), (st, body))
    print("   400 body: %s" % body.decode(), flush=True)
    st, body = http("POST", px + "/api/v2/write?org=x&bucket=%s" % db, good, {"Authorization": "Token wrong"})
    check("proxy: wrong token -> 401 unauthorized", st == 401 and json.loads(body)["code"] == "unauthorized", (st, body))
    st, body = http("POST", px + "/api/v2/write?org=x&bucket=%s" % db, good)
    check("proxy: no token -> 401", st == 401, (st, body))
    st, body = http("POST", px + "/api/v2/write?org=x&bucket=nosuchdb", good, auth)
    check("proxy: unknown bucket -> 404", st == 404 and json.loads(body)["code"] == "not found", (st, body))
    st, body = http("POST", px + "/api/v2/write?org=x&bucket=%s" % db, b"aw_chunked,centre=c2 v=7i %d\n" % now_ns, auth, chunked=True)
    check("proxy: chunked body (as the influxdb2 crate sends) -> 204", st == 204, (st, body))
    st, body = http("POST", px + "/api/v2/write?org=x&bucket=%s&precision=ms" % db, gzip.compress(b"aw_gz,centre=c3 v=8 1700000000123\n"),
                    dict(auth, **{"Content-Encoding": "gzip"}))
    check("proxy: gzip body, precision=ms -> 204", st == 204, (st, body))
    st, body = http("POST", px + "/api/v2/write?org=x&bucket=%s&precision=us" % db, b"aw_us,centre=c4 v=1 1700000000123456\n", auth)
    check("proxy: precision=us -> 204", st == 204, (st, body))
    series = {}
    for m in ("aw_usage", "aw_chunked", "aw_gz", "aw_us"):   # one per query: a multi-measurement
        st, j = influx_query(ix, db, "SELECT * FROM " + m)   # SELECT unions their columns
        for s in j["results"][0].get("series", []):
            series[s["name"]] = s
    u = series.get("aw_usage", {})
    cols = u.get("columns", [])
    vals = [dict(zip(cols, v)) for v in u.get("values", [])]
    check("influx1: read back aw_usage exactly (ns timestamps, tags, fields)",
          vals == [{"time": now_ns, "centre": "c1", "pct": 41.7, "project": "p1", "resource": "cpu", "used_hours": 12.5},
                   {"time": now_ns + 1, "centre": "c1", "pct": None, "project": "p2", "resource": "gpu", "used_hours": 3}], vals)
    check("influx1: precision ms and us mapped", series.get("aw_gz", {}).get("values", [[0]])[0][0] == 1700000000123000000
          and series.get("aw_us", {}).get("values", [[0]])[0][0] == 1700000000123456000, series)
    check("influx1: malformed write stored nothing", influx_query(ix, db, "SELECT * FROM aw_bad")[1]["results"][0].get("series") is None)

    # ---------------------------------------------------- SMTP
    send_mail(env["AW_SMTP_PORT"], "plain-1")
    f = maildir_has(env["AW_SMTP_MAILDIR"], "plain-1")
    check("smtp: mail lands in AW_SMTP_MAILDIR/new", f is not None)
    if f:
        print("   " + f + ":\n" + "".join("   | " + l for l in open(f).read().splitlines(True)), flush=True)
    ap = env["AW_SMTP_AUTH_PORT"]
    creds = (env["AW_SMTP_AUTH_USER"], env["AW_SMTP_AUTH_PASSWORD"])
    try:
        send_mail(ap, "noauth")
        check("smtpauth: MAIL without AUTH refused", False, "accepted")
    except smtplib.SMTPSenderRefused as e:
        check("smtpauth: MAIL without AUTH refused (530)", e.smtp_code == 530, e)
    try:
        send_mail(ap, "badpw", login=(creds[0], "wrong"))
        check("smtpauth: wrong password refused", False, "accepted")
    except smtplib.SMTPAuthenticationError as e:
        check("smtpauth: wrong password refused (535)", e.smtp_code == 535, e)
    send_mail(ap, "auth-plain", login=creds)
    check("smtpauth: AUTH on plain connection, mail lands", maildir_has(env["AW_SMTP_AUTH_MAILDIR"], "auth-plain") is not None)
    send_mail(ap, "auth-tls", login=creds, starttls_ca=env["AW_SMTP_AUTH_CA_CERT"])
    check("smtpauth: STARTTLS (verified against AW_SMTP_AUTH_CA_CERT) + AUTH, mail lands",
          maildir_has(env["AW_SMTP_AUTH_MAILDIR"], "auth-tls") is not None)

    # smtps: implicit TLS (SMTPS), the same account, CA and Maildir
    ca = ssl.create_default_context(cafile=env["AW_SMTP_AUTH_CA_CERT"])
    sp = env["AW_SMTP_TLS_PORT"]
    send_mail(sp, "smtps", login=creds, implicit_tls=ca)
    check("smtps: implicit TLS (verified against AW_SMTP_AUTH_CA_CERT) + AUTH, mail lands",
          maildir_has(env["AW_SMTP_AUTH_MAILDIR"], "smtps") is not None)
    try:
        send_mail(sp, "smtps-untrusted", login=creds, implicit_tls=ssl.create_default_context())
        check("smtps: a client without the test CA fails the handshake", False, "accepted")
    except ssl.SSLCertVerificationError as e:
        check("smtps: a client without the test CA fails the handshake", "certificate verify failed" in str(e), e)
    try:
        send_mail(sp, "smtps-noauth", implicit_tls=ca)
        check("smtps: MAIL without AUTH refused", False, "accepted")
    except smtplib.SMTPSenderRefused as e:
        check("smtps: MAIL without AUTH refused (530)", e.smtp_code == 530, e)
    with smtplib.SMTP_SSL("127.0.0.1", int(sp), timeout=10, context=ca) as s:
        code, ehlo = s.ehlo()
    check("smtps: EHLO lists AUTH, no STARTTLS inside TLS", b"AUTH LOGIN PLAIN" in ehlo and b"STARTTLS" not in ehlo, ehlo)

    # smtpstrict: AUTH only after STARTTLS (aiosmtpd auth_require_tls=True)
    tp = env["AW_SMTP_STRICT_PORT"]
    with smtplib.SMTP("127.0.0.1", int(tp), timeout=10) as s:
        code, ehlo = s.ehlo()
        check("smtpstrict: plain EHLO offers STARTTLS and no AUTH", b"STARTTLS" in ehlo and b"AUTH" not in ehlo, ehlo)
        # a made-up account: real credentials are never sent in clear, not even here
        code, msg = s.docmd("AUTH", "PLAIN AG5vYm9keQBub3QtdGhlLXBhc3N3b3Jk")
        check("smtpstrict: AUTH before STARTTLS -> 538 Encryption required",
              code == 538 and msg == b"5.7.11 Encryption required for requested authentication mechanism", (code, msg))
    send_mail(tp, "strict-tls", login=creds, starttls_ca=env["AW_SMTP_AUTH_CA_CERT"])
    check("smtpstrict: STARTTLS + AUTH, mail lands", maildir_has(env["AW_SMTP_AUTH_MAILDIR"], "strict-tls") is not None)
    log = open(os.path.join(d, "logs", "smtpstrict.log")).read()
    check("smtpstrict: its log records the clear AUTH (538) and the TLS login (ok), never the initial response",
          " tls=no -> 538 (encryption required)" in log and "AUTH PLAIN listener=smtpstrict tls=yes user=b'%s' -> ok" % creds[0] in log
          and "AG5vYm9keQ" not in log, log[-2000:])

    # ---------------------------------------------------- Alertmanager
    am = env["AW_AM_URL"]
    labels = {"alertname": "AllocationOverrun", "centre": "c1", "project": "p1", "resource": "cpu", "severity": "warning"}
    st, body = http("POST", am + "/api/v2/alerts", json.dumps([{"labels": labels, "annotations": {"summary": "p1 at 120%"}}]).encode(),
                    {"Content-Type": "application/json"})
    check("am: POST /api/v2/alerts -> 200", st == 200, (st, body))
    st, body = http("GET", am + "/api/v2/alerts?" + urllib.parse.urlencode({"filter": 'alertname="AllocationOverrun"'}))
    got = json.loads(body) if st == 200 else []
    check("am: GET /api/v2/alerts returns it with all labels", len(got) == 1 and got[0]["labels"] == labels, body[:500])

    # ---------------------------------------------------- outage and return on the same port
    for unit, port_key in (("influxd", "AW_INFLUX1_URL"), ("smtp", "AW_SMTP_PORT"), ("vm", "AW_VM_URL"), ("am", "AW_AM_URL"),
                          ("smtps", "AW_SMTP_TLS_PORT")):
        port = env[port_key].rsplit(":", 1)[-1]
        r, secs = sh(stop, d, "--only", unit)
        check("stop.sh --only %s (%.2fs): port %s closed" % (unit, secs, port), r.returncode == 0 and not port_open(port), r.stderr)
        if unit == "influxd":
            st, body = http("POST", px + "/api/v2/write?bucket=%s" % db, good, auth)
            check("proxy while influxd is down -> 503", st == 503, (st, body))
            st, body = http("GET", px + "/health")
            check("proxy /health while influxd is down -> 503 fail", st == 503, (st, body))
        if unit == "smtp":
            try:
                send_mail(port, "during-outage")
                check("smtp down: connection refused", False)
            except OSError as e:
                check("smtp down: connection refused", isinstance(e, ConnectionRefusedError), repr(e))
        r, secs = sh(start, d, "--only", unit)
        env2 = load_env(d)
        check("start.sh --only %s (%.2fs): same port %s" % (unit, secs, port),
              r.returncode == 0 and env2[port_key] == env[port_key] and port_open(port), r.stderr[-2000:])
    st, body = http("POST", px + "/api/v2/write?bucket=%s" % db, b"aw_after,centre=c1 v=1\n", auth)
    check("proxy after influxd restart -> 204", st == 204, (st, body))
    check("influx1: data written before the restart survived",
          len(influx_query(ix, db, "SELECT * FROM aw_usage")[1]["results"][0].get("series", [{}])[0].get("values", [])) == 2)
    rows = vm_export(vm, '{__name__="aw_usage_used_hours"}')
    check("vm: data written before the restart survived", len(rows) == 2, rows)
    send_mail(env["AW_SMTP_PORT"], "after-restart")
    check("smtp after restart: mail lands", maildir_has(env["AW_SMTP_MAILDIR"], "after-restart") is not None)
    send_mail(sp, "smtps-after-restart", login=creds, implicit_tls=ca)
    check("smtps after restart: same certificate, mail lands", maildir_has(env["AW_SMTP_AUTH_MAILDIR"], "smtps-after-restart") is not None)
    st, body = http("GET", am + "/api/v2/alerts")
    check("am after restart: up (alerts are in memory: %d kept)" % len(json.loads(body)), st == 200, (st, body))
    r, _ = sh(start, d)
    check("start.sh again with everything up: no-op, rc 0", r.returncode == 0 and "already running" in r.stderr, r.stderr)

    # ---------------------------------------------------- stop all
    pids = recorded_pids(d)
    ports = [v.rsplit(":", 1)[-1] for k, v in env.items() if k.endswith("_URL") or (k.endswith("_PORT"))]
    r, secs = sh(stop, d)
    check("stop.sh all (%.2fs)" % secs, r.returncode == 0, r.stderr)
    check("no recorded process left", pids and not any(running(p) for p in pids), [p for p in pids if running(p)])
    check("all ports closed", not any(port_open(p) for p in ports), [p for p in ports if port_open(p)])
    r, _ = sh(stop, d)
    check("stop.sh again: idempotent", r.returncode == 0, r.stderr)
    r, _ = sh(os.path.join(HERE, "status.sh"), d)
    check("status.sh: all stopped", r.returncode == 0 and "running" not in r.stdout, r.stdout)


if __name__ == "__main__":
    sys.exit(main())
