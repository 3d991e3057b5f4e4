"""Embeddings from an OpenAI-compatible HTTP API (`POST {base_url}/embeddings`): production's embedder.

Works with OpenAI and with compatible servers (vLLM, text-embeddings-inference, Ollama...). Batches are
split to `batch_size` inputs per request; 429 and 5xx answers are retried with backoff; every answer is
checked (count, order, dimension, finite values) before it reaches the database. The API key is sent
as a bearer token and never appears in an error message.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from perflab.config import redact_url
from perflab.embed.base import EmbeddingError, check_texts, normalize_rows

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class OpenAIEmbedder:
    """Client for the embeddings endpoint. Pass `client` to share an httpx connection pool."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        dim: int,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        batch_size: int = 256,
        max_retries: int = 2,
        backoff_s: float = 0.25,
        send_dimensions: bool = True,
        client: httpx.Client | None = None,
    ) -> None:
        if batch_size <= 0 or dim <= 0:
            raise ValueError("batch_size and dim must be positive")
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model_name = model
        self.dim = dim
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.send_dimensions = send_dimensions
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=timeout_s)
        self._headers = headers

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> OpenAIEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def warm(self) -> None:
        """Nothing to load locally, and a readiness probe must not spend paid API calls."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        batch = check_texts(texts)
        parts = [self._request(batch[i : i + self.batch_size]) for i in range(0, len(batch), self.batch_size)]
        if not parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalize_rows(np.concatenate(parts), source=self.model_name)

    def _request(self, inputs: list[str]) -> np.ndarray:
        body: dict[str, Any] = {"model": self.model_name, "input": inputs, "encoding_format": "float"}
        if self.send_dimensions:
            body["dimensions"] = self.dim
        where = redact_url(self.url)
        for attempt in range(self.max_retries + 1):
            try:
                resp = self._client.post(self.url, json=body, headers=self._headers)
            except httpx.HTTPError as exc:
                if attempt < self.max_retries:
                    time.sleep(self.backoff_s * 2**attempt)
                    continue
                raise EmbeddingError(f"embedding API at {where} failed: {type(exc).__name__}: {exc}") from exc
            if resp.status_code in _RETRY_STATUS and attempt < self.max_retries:
                time.sleep(_retry_after(resp, self.backoff_s * 2**attempt))
                continue
            if resp.status_code != 200:
                snippet = " ".join(resp.text.split())[:200]
                raise EmbeddingError(f"embedding API at {where} answered {resp.status_code}: {snippet}")
            return self._parse(resp, len(inputs), where)
        raise AssertionError("unreachable")  # pragma: no cover

    def _parse(self, resp: httpx.Response, n: int, where: str) -> np.ndarray:
        try:
            data = resp.json()["data"]
            items = sorted(data, key=lambda d: d["index"])
            if [d["index"] for d in items] != list(range(n)):
                raise ValueError(f"expected indexes 0..{n - 1}")
            rows = [_vector(d["embedding"]) for d in items]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(f"embedding API at {where} answered an unexpected body: {exc}") from exc
        bad = [len(r) for r in rows if len(r) != self.dim]
        if bad:
            raise EmbeddingError(
                f"embedding API at {where} returned {bad[0]}-d vectors for model {self.model_name}, expected {self.dim}"
            )
        return np.stack(rows)


def _vector(value: Any) -> np.ndarray:
    """A list of floats, or base64 little-endian float32 (servers that ignore encoding_format)."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)
    return np.asarray(value, dtype=np.float32)


def _retry_after(resp: httpx.Response, default: float) -> float:
    try:
        return min(float(resp.headers.get("retry-after", default)), 5.0)
    except ValueError:
        return default
