"""Process many uploads concurrently; every item gets a result or a typed error, never a lost batch.

Threads are the default: Pillow releases the GIL while decoding, resampling and encoding, which is
where >95% of a pipeline run goes, so threads scale like processes without pickling megabytes of
output back. `mode="processes"` (spawned workers) exists for when measurement says otherwise;
`perflab bench images` measures both side by side.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from perflab.errors import ConfigError
from perflab.images.errors import ImageError, ProcessingFailed, TooLarge, UnreadableFile
from perflab.images.pipeline import ImagePipeline, ProcessedImage

BatchSource = str | os.PathLike[str] | bytes
BatchMode = Literal["threads", "processes"]


@dataclass(frozen=True)
class BatchItem:
    """The outcome of one source: exactly one of `result` and `error` is set."""

    index: int
    name: str
    result: ProcessedImage | None = None
    error: ImageError | None = None
    elapsed_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def default_workers() -> int:
    """The cores this process may run on (not the machine's count, which ignores cgroup/affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _read(path: Path, max_bytes: int) -> bytes:
    """Read an original without ever opening it for writing; the byte cap is checked on stat first."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise TooLarge(size, max_bytes)
        with path.open("rb") as fh:
            return fh.read(max_bytes + 1)
    except OSError as exc:
        raise UnreadableFile(str(path), exc.strerror or type(exc).__name__) from exc


def _name(index: int, source: BatchSource) -> str:
    return f"<bytes #{index}>" if isinstance(source, bytes) else os.fspath(source)


def process_one(pipeline: ImagePipeline, index: int, source: BatchSource) -> BatchItem:
    """Run one source through the pipeline, turning every failure into that item's typed error."""
    name = _name(index, source)
    start = time.perf_counter()
    try:
        data = source if isinstance(source, bytes) else _read(Path(source), pipeline.options.limits.max_bytes)
        result = pipeline.process(data, filename=None if isinstance(source, bytes) else Path(name).name)
        return BatchItem(index, name, result=result, elapsed_ms=(time.perf_counter() - start) * 1000)
    except ImageError as exc:
        error: ImageError = exc
    except Exception as exc:  # a bug or MemoryError on one item must not sink the other items
        error = ProcessingFailed(type(exc).__name__, str(exc) or repr(exc))
    return BatchItem(index, name, error=error, elapsed_ms=(time.perf_counter() - start) * 1000)


def process_batch(
    sources: Iterable[BatchSource],
    pipeline: ImagePipeline,
    *,
    workers: int | None = None,
    mode: BatchMode = "threads",
    progress: bool = True,
) -> list[BatchItem]:
    """Process every source (a path or the bytes of an upload); items come back in input order."""
    items: Sequence[BatchSource] = list(sources)
    n_workers = default_workers() if workers is None else workers
    if n_workers < 1:
        raise ConfigError(f"workers must be at least 1, got {n_workers}")
    results: list[BatchItem | None] = [None] * len(items)
    executor: Executor
    if mode == "threads":
        executor = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="perflab-image")
    elif mode == "processes":
        executor = ProcessPoolExecutor(max_workers=n_workers, mp_context=get_context("spawn"))
    else:
        raise ConfigError(f"batch mode must be 'threads' or 'processes', got {mode!r}")
    with executor, tqdm(total=len(items), unit="img", disable=not progress, desc="images") as bar:
        futures = {executor.submit(process_one, pipeline, i, src): i for i, src in enumerate(items)}
        for future in as_completed(futures):
            i = futures[future]
            try:
                results[i] = future.result()
            except Exception as exc:  # the worker process died (OOM kill): report it on its item
                error = ProcessingFailed(type(exc).__name__, str(exc))
                results[i] = BatchItem(i, _name(i, items[i]), error=error)
            bar.update(1)
    return [r for r in results if r is not None]
