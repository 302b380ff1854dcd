#!/usr/bin/python3
"""TEST-ONLY SMTP server that requires AUTH, built on Debian's python3-aiosmtpd.

Every accepted message is stored in a Maildir (files appear in MAILDIR/new/),
with the X-Peer, X-MailFrom and X-RcptTo headers aiosmtpd's Mailbox handler adds.

  * AUTH PLAIN and AUTH LOGIN are offered *without* TLS (auth_require_tls=False),
    so a client may authenticate on a plain connection;
  * MAIL FROM before a successful AUTH gets "530 5.7.0 Authentication required";
  * a wrong user or password gets "535 5.7.8 Authentication credentials invalid";
  * with --tls-cert/--tls-key, STARTTLS is also offered (never required).

Two variants, one per listener (start.sh runs each as its own server):

  * --auth-require-tls (`smtpstrict`): AUTH only after STARTTLS, like Postfix with
    smtpd_tls_auth_only=yes: on a plain connection EHLO does not list AUTH, and an
    AUTH command gets "538 5.7.11 Encryption required for requested authentication
    mechanism" (aiosmtpd's own answer); after STARTTLS, EHLO lists AUTH PLAIN LOGIN.
  * --implicit-tls (`smtps`): TLS from the first byte (SMTPS, port 465 style) with
    the --tls-cert/--tls-key pair; no STARTTLS inside it; AUTH as above.

Every AUTH command is logged to stderr before it is handled, as
`AUTH command MECH listener=NAME peer=HOST:PORT tls=yes|no[ -> 538 (encryption required)]` (the mechanism only,
never its argument: an initial response carries the credentials), and every
verdict of the authenticator as `AUTH MECH listener=NAME tls=yes|no user=... -> ok|REJECTED`;
so a test can prove that a client never sent AUTH on a plain connection.

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
    ap.add_argument("--name", default="smtpauth", help="listener name in log lines")
    ap.add_argument("--auth-require-tls", action="store_true",
                    help="AUTH only after STARTTLS (538 before it); needs --tls-cert")
    ap.add_argument("--implicit-tls", action="store_true",
                    help="TLS from the first byte (SMTPS), no STARTTLS; needs --tls-cert")
    a = ap.parse_args()
    if (a.auth_require_tls or a.implicit_tls) and not (a.tls_cert and a.tls_key):
        ap.error("--auth-require-tls and --implicit-tls need --tls-cert and --tls-key")
    if a.auth_require_tls and a.implicit_tls:
        ap.error("--auth-require-tls is for STARTTLS; --implicit-tls is always TLS")

    user, password = a.user.encode(), a.password.encode()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and hmac.compare_digest(auth_data.login, user)
            and hmac.compare_digest(auth_data.password, password)
        )
        print("AUTH %s listener=%s tls=%s user=%r -> %s" % (mechanism, a.name, server.tls_in_use(),
              getattr(auth_data, "login", b"?"), "ok" if ok else "REJECTED"), file=sys.stderr, flush=True)
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd itself answers 535 on failure

    tls = None
    if a.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(a.tls_cert, a.tls_key)

    handler = Mailbox(a.maildir)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    class LoggingSMTP(SMTP):
        def tls_in_use(self):
            # aiosmtpd 1.4 sets _tls_protocol only after STARTTLS; an implicit-TLS
            # listener is TLS from the first byte.
            return "yes" if (a.implicit_tls or self._tls_protocol is not None) else "no"

        async def smtp_AUTH(self, arg):
            mech = (arg or "").split(" ", 1)[0].upper()   # never log the initial response
            peer = self.session.peer
            tls_now = self.tls_in_use()
            print("AUTH command %s listener=%s peer=%s tls=%s%s"
                  % (mech or "-", a.name, "%s:%s" % tuple(peer[:2]) if peer else "?", tls_now,
                     " -> 538 (encryption required)" if a.auth_require_tls and tls_now == "no"
                     and self.session.extended_smtp else ""),
                  file=sys.stderr, flush=True)
            return await super().smtp_AUTH(arg)

    def factory():
        return LoggingSMTP(
            handler,
            hostname="allocwatch-test-smtp-auth",
            authenticator=authenticator,
            auth_required=True,
            # --implicit-tls: aiosmtpd 1.4 does not count implicit TLS as TLS (it would
            # answer 538), and the connection is encrypted from its first byte anyway.
            auth_require_tls=a.auth_require_tls,
            tls_context=None if a.implicit_tls else tls,   # no STARTTLS inside TLS
            require_starttls=False,
        )

    server = loop.run_until_complete(loop.create_server(
        factory, host=a.host, port=a.port, reuse_address=True, ssl=tls if a.implicit_tls else None))
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.add_signal_handler(signal.SIGINT, loop.stop)
    print("smtp_auth_server %s listening on %s:%d maildir=%s tls=%s auth=%s"
          % (a.name, a.host, a.port, a.maildir,
             "implicit" if a.implicit_tls else "starttls-offered" if tls else "off",
             "after-tls-only" if a.auth_require_tls else "always"), file=sys.stderr, flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()


if __name__ == "__main__":
    main()
