"""OpenAIEmbedder against a real HTTP server on loopback that speaks the embeddings API."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from perflab.embed import EmbeddingError, HashingEmbedder, OpenAIEmbedder

KEY = "sk-test-secret-123"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.script: list[str] = []  # one behaviour per request; "ok" once the list is empty
        self.inner = HashingEmbedder(384)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        mode = self.server.script.pop(0) if self.server.script else "ok"
        if mode == "503":
            return self._send(503, b'{"error": "overloaded"}', {"Retry-After": "0"})
        if mode == "401":
            return self._send(401, b'{"error": {"message": "invalid api key"}}')
        if mode == "garbage":
            return self._send(200, b"<html>not json</html>")
        inputs = body["input"]
        vectors = self.server.inner.embed(inputs) * 7.0  # not normalized, as some servers do
        if mode == "short":
            vectors = vectors[:, :100]
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode()
                if mode == "base64"
                else v.tolist(),
            }
            for i, v in enumerate(vectors)
        ]
        data.reverse()  # the client must order by index
        self._send(200, json.dumps({"object": "list", "data": data, "model": body["model"]}).encode())

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture()
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def client(server: _Server, **kw: Any) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        base_url=server.base_url, model="text-embedding-3-small", dim=384, api_key=KEY, backoff_s=0.0, **kw
    )


TEXTS = [f"text number {i}" for i in range(7)]


def test_batches_order_and_normalization(server: _Server) -> None:
    with client(server, batch_size=3) as e:
        v = e.embed(TEXTS)
    assert v.shape == (7, 384) and v.dtype == np.float32
    np.testing.assert_allclose(v, HashingEmbedder(384).embed(TEXTS), atol=1e-6)
    assert [len(r["body"]["input"]) for r in server.requests] == [3, 3, 1]
    r = server.requests[0]
    assert r["path"] == "/v1/embeddings" and r["auth"] == f"Bearer {KEY}"
    assert r["body"]["model"] == "text-embedding-3-small" and r["body"]["dimensions"] == 384


def test_base64_vectors(server: _Server) -> None:
    server.script = ["base64"]
    np.testing.assert_allclose(
        client(server).embed(TEXTS[:2]), HashingEmbedder(384).embed(TEXTS[:2]), atol=1e-6
    )


def test_retries_a_busy_server(server: _Server) -> None:
    server.script = ["503", "503"]
    assert client(server, max_retries=2).embed(["x"]).shape == (1, 384)
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (["503", "503", "503"], "answered 503"),
        (["401"], "answered 401: .*invalid api key"),
        (["garbage"], "unexpected body"),
        (["short"], "returned 100-d vectors"),
    ],
)
def test_failures_are_typed_and_never_show_the_key(server: _Server, script: list[str], message: str) -> None:
    server.script = list(script)
    with pytest.raises(EmbeddingError, match=message) as info:
        client(server, max_retries=2).embed(["x"])
    assert KEY not in str(info.value)


def test_unreachable_server() -> None:
    e = OpenAIEmbedder(base_url="http://127.0.0.1:9/v1", model="m", dim=8, max_retries=0, timeout_s=2)
    with pytest.raises(EmbeddingError, match="failed: ConnectError"):
        e.embed(["x"])


def test_empty_batch_makes_no_request(server: _Server) -> None:
    assert client(server).embed([]).shape == (0, 384) and server.requests == []
