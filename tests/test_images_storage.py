"""Local storage: atomic writes, safe keys, content types; storing a processed upload."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from perflab.images import ImagePipeline, InvalidKey, ObjectNotFound, StorageError, is_hashed_key, object_key
from perflab.images.storage import LocalStorage, Storage, content_type_for_key, store_processed


def test_put_get_exists_path(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "media")
    assert isinstance(store, Storage)
    store.put("ab/cd-w640.jpg", b"jpeg bytes", "image/jpeg")
    assert store.get("ab/cd-w640.jpg") == b"jpeg bytes"
    assert store.exists("ab/cd-w640.jpg") and not store.exists("ab/other.jpg")
    assert store.path("ab/cd-w640.jpg") == tmp_path / "media" / "ab" / "cd-w640.jpg"
    assert sorted(p.name for p in (tmp_path / "media" / "ab").iterdir()) == ["cd-w640.jpg"]  # no temp left
    with pytest.raises(ObjectNotFound):
        store.get("ab/missing.jpg")
    with pytest.raises(ObjectNotFound):
        store.get("ab")  # a directory is not an object


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../x.jpg",
        "a/../../x.jpg",
        "/etc/passwd",
        "a//b.jpg",
        ".hidden.jpg",
        "a/.tmp-1.part",
        "a\\b.jpg",
        "a/b c.jpg",
        "a/\0.jpg",
        "x" * 1025,
    ],
)
def test_unsafe_keys_are_refused(tmp_path: Path, key: str) -> None:
    store = LocalStorage(tmp_path)
    with pytest.raises(InvalidKey):
        store.put(key, b"x", "image/jpeg")
    with pytest.raises(InvalidKey):
        store.get(key)
    assert list(tmp_path.iterdir()) == []


def test_content_type_must_match_the_key(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    with pytest.raises(StorageError, match="does not match"):
        store.put("a/b.webp", b"x", "image/jpeg")
    store.put("a/b.avif", b"x", "image/avif")
    assert content_type_for_key("a/b.avif") == "image/avif"
    assert content_type_for_key("a/b.JPG") == "image/jpeg"
    assert content_type_for_key("a/noext") == "application/octet-stream"


def test_concurrent_writers_never_expose_partial_objects(tmp_path: Path) -> None:
    """Readers racing two writers see one complete version or the other, never a mix or a prefix."""
    store = LocalStorage(tmp_path)
    versions = [b"A" * 300_000, b"B" * 500_000]
    store.put("k/obj.jpg", versions[0], "image/jpeg")
    stop = threading.Event()
    seen: set[bytes] = set()

    def write(data: bytes) -> None:
        while not stop.is_set():
            store.put("k/obj.jpg", data, "image/jpeg")

    writers = [threading.Thread(target=write, args=(v,)) for v in versions]
    for t in writers:
        t.start()
    try:
        for _ in range(300):
            seen.add(store.get("k/obj.jpg"))
    finally:
        stop.set()
        for t in writers:
            t.join()
    assert seen <= set(versions)
    assert not [p for p in (tmp_path / "k").iterdir() if p.name.startswith(".")]


def test_store_processed_uses_content_hashed_keys(image_corpus: Path, tmp_path: Path) -> None:
    result = ImagePipeline().process((image_corpus / "photos" / "rocket.jpg").read_bytes())
    store = LocalStorage(tmp_path)
    keys = store_processed(store, result, prefix="media/")
    assert set(keys) == {"master", "w320", "thumb"}
    for d in result.derivatives:
        key = keys[d.name]
        assert key == "media/" + object_key(d.data, d.name, "jpg") and is_hashed_key(key)
        assert store.get(key) == d.data
    mtimes = {k: store.path(k).stat().st_mtime_ns for k in keys.values()}
    assert store_processed(store, result, prefix="media/") == keys  # idempotent: nothing rewritten
    assert {k: store.path(k).stat().st_mtime_ns for k in keys.values()} == mtimes
