#!/usr/bin/python3
"""TEST-ONLY SMTP server that requires AUTH, built on Debian's python3-aiosmtpd.

Every accepted message is stored in a Maildir (files appear in MAILDIR/new/),
with the X-Peer, X-MailFrom and X-RcptTo headers aiosmtpd's Mailbox handler adds.

  * AUTH PLAIN and AUTH LOGIN are offered *without* TLS (auth_require_tls=False),
    so a client may authenticate on a plain connection;
  * MAIL FROM before a successful AUTH gets "530 5.7.0 Authentication required";
  * a wrong user or password gets "535 5.7.8 Authentication credentials invalid";
  * with --tls-cert/--tls-key, STARTTLS is also offered (never required).

Run with Debian's /usr/bin/python3 (that is where python3-aiosmtpd lives).
"""

import argparse
import asyncio
import hmac
import signal
import ssl
import sys

from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def main():
    ap = argparse.ArgumentParser(description="SMTP server requiring AUTH (test only)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    a = ap.parse_args()

    user, password = a.user.encode(), a.password.encode()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and hmac.compare_digest(auth_data.login, user)
            and hmac.compare_digest(auth_data.password, password)
        )
        print("AUTH %s user=%r -> %s" % (mechanism, getattr(auth_data, "login", b"?"), "ok" if ok else "REJECTED"),
              file=sys.stderr, flush=True)
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd itself answers 535 on failure

    tls = None
    if a.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(a.tls_cert, a.tls_key)

    handler = Mailbox(a.maildir)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def factory():
        return SMTP(
            handler,
            hostname="allocwatch-test-smtp-auth",
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=False,
            tls_context=tls,
            require_starttls=False,
        )

    server = loop.run_until_complete(loop.create_server(factory, host=a.host, port=a.port, reuse_address=True))
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.add_signal_handler(signal.SIGINT, loop.stop)
    print("smtp_auth_server listening on %s:%d maildir=%s starttls=%s"
          % (a.host, a.port, a.maildir, "offered" if tls else "off"), file=sys.stderr, flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()


if __name__ == "__main__":
    main()
