"""EmbeddingCache: text -> float32 vector, one round trip per batch.

Key: `{prefix}:emb:{model}:{version}:{sha256(text)}` (the full 256-bit digest, so two texts never
share an entry). Value: an 8-byte header (magic, dimension) and the packed little-endian float32
vector: about 5x smaller than the same vector as JSON, and decoded without parsing. A value with the
wrong header or length (another model's, a corrupt one) or with NaN or infinite values is a miss,
never a crash.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from perflab.arrays import real_floats
from perflab.cache.errors import CacheValueError
from perflab.cache.keys import check_segment, digest, glob_escape
from perflab.cache.manager import CacheManager

_MAGIC = b"EMB1"
_HEAD = struct.Struct("<4sI")
_DTYPE = np.dtype("<f4")


class EmbeddingCache:
    """Cache of one embedding model's vectors; `version` changes when the model's output changes."""

    def __init__(
        self,
        manager: CacheManager,
        *,
        model: str,
        dim: int,
        version: str = "v1",
        ttl: float = 7 * 24 * 3600,
    ) -> None:
        if not 0 < dim <= 65536:
            raise CacheValueError(f"embedding dim {dim} is out of range 1..65536")
        self.manager = manager
        self.model = check_segment("model", model)
        self.version = check_segment("version", version)
        self.dim = dim
        self.ttl = ttl
        self.namespace = f"emb:{model}:{version}"
        self._ns = self.namespace + ":"
        self._header = _HEAD.pack(_MAGIC, dim)
        self._size = _HEAD.size + dim * _DTYPE.itemsize

    def key(self, text: str) -> str:
        """The relative key of `text`'s vector (the manager adds its prefix)."""
        return self._ns + digest(text, 64)

    def encode(self, vec: Any) -> bytes:
        """Header + float32 bytes; CacheValueError for a wrong shape or non-finite values."""
        arr = self._as_matrix(vec, 1, single=True)
        return self._header + arr.tobytes()

    def decode(self, data: bytes | None) -> np.ndarray | None:
        """The vector (a read-only view of `data`), or None when `data` is not one of ours."""
        if data is None or len(data) != self._size or not data.startswith(self._header):
            return None
        vec = np.frombuffer(data, _DTYPE, self.dim, _HEAD.size)
        return vec if np.isfinite(vec).all() else None

    def get(self, text: str) -> np.ndarray | None:
        data = self.manager.get_raw(self.key(text))
        vec = self.decode(data)
        if data is not None and vec is None:
            self.manager.count(corrupt=1)
        return vec

    def get_many(self, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Vectors for `texts` in order (None where missing), with one MGET.

        The loop is `decode` inlined with locals: it runs once per vector on the batch hot path.
        """
        ns, sha256 = self._ns, hashlib.sha256
        values = self.manager.get_many_raw(
            [ns + sha256(t.encode("utf-8", "surrogatepass")).hexdigest() for t in texts]
        )
        size, header, dim, offset, frombuffer = self._size, self._header, self.dim, _HEAD.size, np.frombuffer
        isfinite = np.isfinite
        out: list[np.ndarray | None] = []
        append = out.append
        bad = 0
        for data in values:
            if data is None:
                append(None)
                continue
            if len(data) == size and data.startswith(header):
                vec = frombuffer(data, _DTYPE, dim, offset)
                if isfinite(vec).all():
                    append(vec)
                    continue
            bad += 1
            append(None)
        if bad:
            self.manager.count(corrupt=bad)
        return out

    def set(self, text: str, vec: Any) -> bool:
        return self.manager.set_raw(self.key(text), self.encode(vec), self.ttl)

    def set_many(self, texts: Sequence[str], vecs: Any) -> bool:
        """Store `vecs[i]` for `texts[i]` in one pipelined round trip. `vecs`: (n, dim) array or list."""
        if not texts:
            return True
        arr = self._as_matrix(vecs, len(texts), single=False)
        header = self._header
        return self.manager.set_many_raw(
            {self._ns + digest(t, 64): header + row.tobytes() for t, row in zip(texts, arr, strict=True)},
            self.ttl,
        )

    def invalidate(self, text: str) -> bool:
        return self.manager.delete(self.key(text)) > 0

    def clear(self) -> int:
        """Delete every vector of this model and version (SCAN + UNLINK); returns how many."""
        return self.manager.delete_pattern(glob_escape(self._ns) + "*")

    def _as_matrix(self, vecs: Any, n: int, *, single: bool) -> np.ndarray:
        arr = real_floats(vecs, CacheValueError)
        expected = (self.dim,) if single else (n, self.dim)
        if arr.shape != expected:
            raise CacheValueError(f"embedding shape {arr.shape} != expected {expected}")
        return np.ascontiguousarray(arr, dtype=_DTYPE)
