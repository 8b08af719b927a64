"""A scripted LLM server on loopback, speaking the OpenAI chat-completions and Anthropic messages wire
formats, so the tests drive the real SDKs over real HTTP.

Each POST takes the next step of the script. A step is a dict:
  {"text": "...", "tokens_in": 11, "tokens_out": 7}   a reply with that usage
  {"status": 429, "headers": {"Retry-After": "1"}}     an error status (JSON error body)
  {"sleep": 1.0, ...}                                  wait first (longer than the client's timeout)
or a callable (request_body) -> step, evaluated when the request arrives. When the script runs out,
`default` (a step or callable) answers, or HTTP 500 if there is none.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Step = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]


class ScriptedLLMServer:
    def __init__(self, script: list[Step] | None = None, default: Step | None = None):
        self.script = list(script or [])
        self.default = default
        self.requests: list[dict[str, Any]] = []  # bodies received, in order
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ScriptedLLMServer:  # noqa: PYI034
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def next_step(self, body: dict[str, Any], path: str) -> dict[str, Any] | None:
        with self._lock:
            self.requests.append(body)
            self.paths.append(path)
            step = self.script.pop(0) if self.script else self.default
        return step(body) if callable(step) else step


def _handler(server: ScriptedLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            step = server.next_step(body, self.path)
            if step is None:
                return self._send(500, {"error": {"message": "script exhausted", "type": "server_error"}})
            if step.get("sleep"):
                time.sleep(step["sleep"])
            if "status" in step:
                return self._send(step["status"], {"type": "error", "error": {
                    "message": step.get("message", f"scripted {step['status']}"), "type": "scripted_error"}},
                    step.get("headers", {}))
            text, tin, tout = step["text"], step.get("tokens_in", 10), step.get("tokens_out", 5)
            if self.path.endswith("/chat/completions"):
                return self._send(200, {
                    "id": "chatcmpl-scripted", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}})
            if self.path.endswith("/messages"):
                return self._send(200, {
                    "id": "msg_scripted", "type": "message", "role": "assistant", "model": body["model"],
                    "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                    "stop_sequence": None, "usage": {"input_tokens": tin, "output_tokens": tout}})
            return self._send(404, {"error": {"message": f"no route {self.path}"}})

        def _send(self, status: int, obj: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(obj).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                pass

    return Handler
