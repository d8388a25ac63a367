"""Local fakes of the outside providers, speaking their real wire formats."""
import json
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Upload(tuple):
    """A file part of a multipart request: (filename, content, content_type)."""

    @property
    def filename(self):
        return self[0]

    @property
    def content(self):
        return self[1]

    @property
    def content_type(self):
        return self[2]


def parse_body(content_type: str, raw: bytes) -> dict:
    """A JSON body, or a multipart/form-data one as {field: text | Upload}, or a urlencoded form."""
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        out = {}
        for part in message.iter_parts():
            name, filename = part.get_param("name", header="content-disposition"), part.get_filename()
            content = part.get_payload(decode=True) or b""
            out[name] = Upload((filename, content, part.get_content_type())) if filename is not None \
                else content.decode()
        return out
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


class JsonApiServer:
    """A threaded HTTP server on 127.0.0.1 that answers JSON (or bytes, for file downloads):
    subclasses implement `answer(method, raw_path, body) -> (status, json)`,
    `(status, bytes, content_type)` or `(status, bytes, content_type, headers)`; use it as a
    context manager."""

    def __init__(self, path_prefix: str = ""):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = parse_body(self.headers.get("Content-Type") or "", raw)
                status, answer, *more = fake.answer(self.command, self.path, body)
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", more[0] if more else "application/json")
                for name, value in (more[1] if len(more) > 1 else {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _reply

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path_prefix}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, method: str, raw_path: str, body: dict):
        raise NotImplementedError

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
