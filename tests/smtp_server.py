"""A real SMTP server on 127.0.0.1 for stratbox's email tests, built on aiosmtpd.

Prints `listening <port>` once it accepts connections, then one JSON line per
message it accepts. It exits when its standard input closes, so it never
outlives the test that started it.

Options:
  --cert/--key      offer STARTTLS with this certificate
  --require-tls     refuse mail before STARTTLS
  --login U:P       require AUTH with this login (only after STARTTLS)
  --fault "451 ..." answer DATA with this reply instead of accepting; repeatable,
                    used in order before any message is accepted
"""

import argparse
import asyncio
import json
import logging
import socket
import ssl
import sys
import threading

from aiosmtpd.smtp import SMTP, AuthResult


class Handler:
    def __init__(self, faults):
        self.faults = list(faults)

    async def handle_DATA(self, server, session, envelope):
        if self.faults:
            return self.faults.pop(0)
        login = session.auth_data.decode() if isinstance(session.auth_data, bytes) else session.auth_data
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "login": login,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        print(json.dumps(record), flush=True)
        return "250 2.0.0 OK"


class Login:
    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == self.user and auth_data.password == self.password
        # handled=False makes aiosmtpd answer a failure with 535 itself.
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)


async def serve(args):
    tls = None
    if args.cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.cert, args.key)
    options = {"hostname": "stratbox-test-smtp", "tls_context": tls, "require_starttls": args.require_tls}
    if args.login:
        user, _, password = args.login.partition(":")
        options.update(authenticator=Login(user, password), auth_required=True, auth_require_tls=True)
    handler = Handler(args.fault)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, **options), sock=sock)
    print(f"listening {sock.getsockname()[1]}", flush=True)
    stdin_closed = loop.create_future()
    threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stdin_closed.set_result, None)),
                     daemon=True).start()
    await stdin_closed
    server.close()


def main():
    # aiosmtpd logs a warning about its own deprecated Session.login_data on every AUTH.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--require-tls", action="store_true")
    parser.add_argument("--login")
    parser.add_argument("--fault", action="append", default=[])
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
