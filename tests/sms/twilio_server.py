"""A real local HTTP server speaking Twilio's Messages API, for the SMS tests.

`POST /2010-04-01/Accounts/{sid}/Messages.json` with a form body and basic auth; it records each
request (form fields and the credentials) and answers as Twilio does: 201 with `sid` and
`status`, or the status and JSON error queued in `answers`.
"""

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "test-auth-token"
FROM = "+15005550006"


@dataclass
class Received:
    path: str
    form: dict[str, str]
    auth: tuple[str, str]


@dataclass
class TwilioServer:
    port: int = 0
    received: list[Received] = field(default_factory=list)
    answers: list[tuple[int, dict[str, object]]] = field(default_factory=list)
    """Answers given before the normal 201, first first: (status, JSON body)."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def texts(self) -> list[Received]:
        """The requests answered 201: the texts that went."""
        return [r for r in self.received if r.form.get("_accepted") == "yes"]


def _handler(server: TwilioServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
            user, _, password = base64.b64decode(encoded).decode().partition(":")
            record = Received(self.path, form, (user, password))
            server.received.append(record)
            expected = f"/2010-04-01/Accounts/{SID}/Messages.json"
            if scheme != "Basic" or (user, password) != (SID, TOKEN):
                status, body = 401, {"code": 20003, "message": "Authenticate"}
            elif self.path != expected:
                status, body = 404, {"code": 20404, "message": "Not found"}
            elif server.answers:
                status, body = server.answers.pop(0)
            else:
                form["_accepted"] = "yes"
                sid = f"SM{len(server.received):032d}"
                status, body = 201, {"sid": sid, "status": "queued", "to": form.get("To")}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def twilio_server() -> Iterator[TwilioServer]:
    state = TwilioServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
