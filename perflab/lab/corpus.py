"""Reproducible image corpora under `data/`: real photographs, and files that break naive pipelines.

`data/photos/`: the public-domain / CC0 / CC-BY photographs shipped inside scikit-image and
scikit-learn, copied byte for byte, plus LANCZOS-upscaled JPEG versions (3072, 4032 and 6048 px long
edge) so the 2048 master, the draft (shrink-on-load) and the responsive paths all run, plus two real
upload traits: an EXIF-rotated photo carrying GPS, and an Adobe RGB tagged one.
`data/bad/`: truncated, bomb, empty, renamed, CMYK, 16-bit, animated, huge-EXIF and mislabelled files,
each with the outcome the pipeline must produce (`BAD_FILES`).

Nothing is downloaded and nothing is committed: `perflab corpus` (and the test suite and benchmark,
through `ensure_corpus`) build it in a few seconds. `MANIFEST.json` records every file's SHA-256,
size, source and licence; `data/README.md` explains provenance.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import os
import struct
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import PIL
from filelock import FileLock
from PIL import ExifTags, Image, ImageCms

from perflab.config import Settings, project_root
from perflab.errors import ConfigError

VERSION = 1  # bump when the recipe changes: ensure_corpus rebuilds


@dataclass(frozen=True)
class PhotoSource:
    name: str
    package: str
    resource: str
    licence: str
    credit: str


PHOTOS: tuple[PhotoSource, ...] = (
    PhotoSource("astronaut", "skimage.data", "astronaut.png", "public domain", "NASA (Eileen Collins)"),
    PhotoSource("chelsea", "skimage.data", "chelsea.png", "CC0", "Stefan van der Walt"),
    PhotoSource("coffee", "skimage.data", "coffee.png", "CC0", "Rachel Michetti (Pikolo Espresso Bar)"),
    PhotoSource("rocket", "skimage.data", "rocket.jpg", "public domain", "SpaceX"),
    PhotoSource("hubble", "skimage.data", "hubble_deep_field.jpg", "public domain", "NASA/ESA HubbleSite"),
    PhotoSource("retina", "skimage.data", "retina.jpg", "CC0", "Mikael Häggström (Wikimedia Commons)"),
    PhotoSource("china", "sklearn.datasets.images", "china.jpg", "CC BY 2.0", "danielbuechele (Flickr)"),
    PhotoSource("flower", "sklearn.datasets.images", "flower.jpg", "CC BY 2.0", "vultilion (Flickr)"),
)
UPSCALED_EDGES = (3072, 4032)
XL_EDGE, XL_PHOTOS = 6048, ("coffee", "china")
UPSCALE_QUALITY = 90  # a camera-like JPEG

# Outcome per bad file: the ImageError subclass name, or "ok" (must be processed, and handled right).
BAD_FILES: dict[str, str] = {
    "truncated.jpg": "CorruptImage",
    "bomb.png": "DecompressionBomb",
    "empty.jpg": "EmptyFile",
    "text.jpg": "UnsupportedFormat",
    "tiff_renamed.jpg": "UnsupportedFormat",
    "broken_header.png": "CorruptImage",
    "cmyk.jpg": "ok",
    "gray16.png": "ok",
    "animated.gif": "ok",
    "huge_exif.jpg": "ok",
    "png_renamed.jpg": "ok",
}


@dataclass(frozen=True)
class CorpusFile:
    path: str  # relative to the corpus root
    sha256: str
    bytes: int
    source: str
    licence: str


def _photo(name: str) -> PhotoSource:
    return next(p for p in PHOTOS if p.name == name)


def _source_bytes(photo: PhotoSource) -> bytes:
    try:
        return resources.files(photo.package).joinpath(photo.resource).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ConfigError(
            f"the photo corpus is built from {photo.package} ({photo.resource}); install the lab extra "
            f"(pip install -e '.[lab]'): {exc}"
        ) from exc


def _jpeg(im: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=UPSCALE_QUALITY, **params)
    return buf.getvalue()


def _upscale(data: bytes, edge: int) -> Image.Image:
    im = Image.open(io.BytesIO(data)).convert("RGB")
    scale = edge / max(im.size)
    return im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)


def _upscaled_jpeg(photo: PhotoSource, edge: int) -> bytes:
    return _jpeg(_upscale(_source_bytes(photo), edge))


def _gps_exif(orientation: int | None, description: str = "") -> Image.Exif:
    """EXIF with a GPS position (Amsterdam) and a camera make: what must never be published."""
    exif = Image.Exif()
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "perflab-test-camera"
    if description:
        exif[ExifTags.Base.ImageDescription] = description
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 22.0, 5.5)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (4.0, 53.0, 28.0)
    return exif


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def matrix_profile(
    description: str,
    red: tuple[float, float, float],
    green: tuple[float, float, float],
    blue: tuple[float, float, float],
    gamma: float,
) -> bytes:
    """A minimal ICC v2 RGB matrix/TRC display profile (D50 colorants, pure gamma)."""

    def xyz(v: tuple[float, float, float]) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(_s15(c) for c in v)

    ascii_ = description.encode("ascii") + b"\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + b"\0" * 8 + b"\0\0\0" + b"\0" * 67
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    tags = [
        (b"desc", desc),
        (b"cprt", b"text\0\0\0\0" + b"No copyright, use freely\0"),
        (b"wtpt", xyz((0.9642, 1.0, 0.8249))),
        (b"rXYZ", xyz(red)),
        (b"gXYZ", xyz(green)),
        (b"bXYZ", xyz(blue)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    table_end = 128 + 4 + 12 * len(tags)
    offset, entries, blobs = table_end, b"", b""
    for sig, blob in tags:
        blob += b"\0" * (-len(blob) % 4)
        entries += sig + struct.pack(">II", offset, len(blob))
        blobs += blob
        offset += len(blob)
    header = bytearray(128)
    struct.pack_into(">I", header, 0, offset)
    header[8:12] = bytes((2, 0x10, 0, 0))
    header[12:16], header[16:20], header[20:24] = b"mntr", b"RGB ", b"XYZ "
    struct.pack_into(">6H", header, 24, 2024, 1, 1, 0, 0, 0)
    header[36:40] = b"acsp"
    header[68:80] = _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    return bytes(header) + struct.pack(">I", len(tags)) + entries + blobs


def adobe_rgb_profile() -> bytes:
    """Adobe RGB (1998)-compatible primaries (D50-adapted colorants, gamma 563/256)."""
    return matrix_profile(
        "Adobe RGB (1998) compatible, perflab test profile",
        (0.60974, 0.31111, 0.01947),
        (0.20528, 0.62567, 0.06087),
        (0.14919, 0.06322, 0.74457),
        563 / 256,
    )


def _bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit PNG header declaring width*height pixels, with all-zero rows deflated to ~50 kB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    comp = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _photo_files() -> dict[str, tuple[Callable[[], bytes], str, str]]:
    """name -> (build function, source description, licence)."""
    out: dict[str, tuple[Callable[[], bytes], str, str]] = {}
    for p in PHOTOS:
        ext = p.resource.rsplit(".", 1)[1]
        src = f"{p.package}/{p.resource} ({p.credit})"
        out[f"{p.name}.{ext}"] = (functools.partial(_source_bytes, p), src, p.licence)
        edges = UPSCALED_EDGES + ((XL_EDGE,) if p.name in XL_PHOTOS else ())
        for edge in edges:
            out[f"{p.name}_{edge}.jpg"] = (
                functools.partial(_upscaled_jpeg, p, edge),
                f"{src}, LANCZOS-upscaled to {edge} px long edge, JPEG q{UPSCALE_QUALITY}",
                p.licence,
            )
    rocket, coffee = _photo("rocket"), _photo("coffee")

    def rotated() -> bytes:
        # Stored sideways with orientation 6 ("rotate 90 degrees clockwise to display").
        upright = _upscale(_source_bytes(rocket), 3072)
        return _jpeg(upright.transpose(Image.Transpose.ROTATE_90), exif=_gps_exif(6).tobytes())

    def adobe_rgb() -> bytes:
        srgb = _upscale(_source_bytes(coffee), 3072)
        icc = adobe_rgb_profile()
        to_adobe = ImageCms.buildTransform(
            ImageCms.createProfile("sRGB"),
            ImageCms.ImageCmsProfile(io.BytesIO(icc)),
            "RGB",
            "RGB",
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
        )
        adobe = ImageCms.applyTransform(srgb, to_adobe)
        assert adobe is not None  # not in place, so a new image
        return _jpeg(adobe, icc_profile=icc)

    out["rocket_exif6_gps.jpg"] = (
        rotated,
        f"{rocket.package}/{rocket.resource}, 3072 px, stored rotated with EXIF orientation 6 + GPS",
        rocket.licence,
    )
    out["coffee_adobe_rgb.jpg"] = (
        adobe_rgb,
        f"{coffee.package}/{coffee.resource}, 3072 px, converted to Adobe RGB, profile embedded",
        coffee.licence,
    )
    return out


def _bad_files() -> dict[str, tuple[Callable[[], bytes], str, str]]:
    chelsea, rocket = _photo("chelsea"), _photo("rocket")

    def truncated() -> bytes:
        full = _jpeg(_upscale(_source_bytes(rocket), 1024))
        return full[: len(full) * 55 // 100]

    def cmyk() -> bytes:
        return _jpeg(Image.open(io.BytesIO(_source_bytes(chelsea))).convert("CMYK"))

    def gray16() -> bytes:
        # A 16-bit ramp 0..65535 left to right: clipping to 8 bits would turn most of it white.
        import numpy as np

        ramp = np.tile(np.linspace(0, 65535, 640).astype(np.uint16), (400, 1))
        buf = io.BytesIO()
        Image.fromarray(ramp).save(buf, "PNG")  # uint16 -> mode I;16
        return buf.getvalue()

    def animated() -> bytes:
        frames = [Image.new("RGB", (320, 240), c) for c in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
        buf = io.BytesIO()
        frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
        return buf.getvalue()

    def huge_exif() -> bytes:
        im = _upscale(_source_bytes(rocket), 1024)
        exif = _gps_exif(1, description="x" * 30000)
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = b"ASCII\0\0\0" + b"y" * 25000
        return _jpeg(im, exif=exif.tobytes())

    def png(im: Image.Image) -> bytes:
        buf = io.BytesIO()
        im.save(buf, "PNG")
        return buf.getvalue()

    def tiff() -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), (90, 90, 90)).save(buf, "TIFF")
        return buf.getvalue()

    return {
        "truncated.jpg": (truncated, "rocket at 1024 px, JPEG cut at 55% of its bytes", rocket.licence),
        "bomb.png": (_bomb_png, "generated: 1-bit PNG declaring 20000x20000 px (400 MP) in ~50 kB", "CC0"),
        "empty.jpg": (lambda: b"", "generated: zero bytes", "CC0"),
        "text.jpg": (lambda: b"This is a text file, renamed to .jpg.\n" * 20, "generated: plain text", "CC0"),
        "tiff_renamed.jpg": (tiff, "generated: a TIFF (not an accepted format) named .jpg", "CC0"),
        "broken_header.png": (
            lambda: b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDX" + b"\xff" * 64,
            "generated: PNG signature followed by a damaged header",
            "CC0",
        ),
        "cmyk.jpg": (cmyk, "chelsea converted to CMYK (Pillow), JPEG", chelsea.licence),
        "gray16.png": (gray16, "generated: 16-bit grayscale ramp 0..65535, 640x400", "CC0"),
        "animated.gif": (animated, "generated: 3-frame GIF (red, green, blue)", "CC0"),
        "huge_exif.jpg": (huge_exif, "rocket at 1024 px with ~55 kB of EXIF incl. GPS", rocket.licence),
        "png_renamed.jpg": (
            lambda: png(_upscale(_source_bytes(chelsea), 800)),
            "chelsea at 800 px as PNG, named .jpg",
            chelsea.licence,
        ),
    }


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _manifest_ok(root: Path) -> bool:
    manifest = root / "MANIFEST.json"
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    if data.get("version") != VERSION:
        return False
    return all(
        (root / f["path"]).is_file() and (root / f["path"]).stat().st_size == f["bytes"]
        for f in data["files"]
    )


def build_corpus(root: Path, *, force: bool = False) -> list[CorpusFile]:
    """Build photos/ and bad/ under `root` (skipped when MANIFEST.json is current, unless forced)."""
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".corpus.lock")):
        if not force and _manifest_ok(root):
            return [CorpusFile(**f) for f in json.loads((root / "MANIFEST.json").read_text())["files"]]
        files: list[CorpusFile] = []
        for folder, recipes in (("photos", _photo_files()), ("bad", _bad_files())):
            for name, (build, source, licence) in recipes.items():
                data = build()
                _write_atomic(root / folder / name, data)
                digest = hashlib.sha256(data).hexdigest()
                files.append(CorpusFile(f"{folder}/{name}", digest, len(data), source, licence))
        manifest = {"version": VERSION, "pillow": PIL.__version__, "files": [asdict(f) for f in files]}
        _write_atomic(root / "MANIFEST.json", json.dumps(manifest, indent=1).encode())
        return files


def default_root() -> Path:
    return project_root() / "data"


def ensure_corpus(root: Path | None = None) -> Path:
    """The corpus root, built first if missing or stale."""
    root = root or default_root()
    build_corpus(root)
    return root


def photo_paths(root: Path | None = None) -> list[Path]:
    """Every photo of the corpus (built if needed), sorted by name."""
    folder = ensure_corpus(root) / "photos"
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)


def main(settings: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="perflab corpus", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="where to build (default: data/)")
    parser.add_argument("--force", action="store_true", help="rebuild even if MANIFEST.json is current")
    args = parser.parse_args(argv)
    root = args.root or default_root()
    files = build_corpus(root, force=args.force)
    total = sum(f.bytes for f in files)
    for folder in ("photos", "bad"):
        n = sum(1 for f in files if f.path.startswith(folder + "/"))
        print(f"{root / folder}: {n} files")
    print(f"{len(files)} files, {total / 1e6:.1f} MB; manifest {root / 'MANIFEST.json'}")
    return 0
