"""`perflab embed export`: make the ONNX MiniLM files once (needs the ml extra), so serving needs no torch."""

from __future__ import annotations

import argparse

from perflab.config import Settings
from perflab.embed.onnx import MANIFEST_FILE, ensure_exported, exported, models_dir


def main(settings: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="perflab embed", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("export", help="export and quantize all-MiniLM-L6-v2 to ONNX under home/models/")
    sub.add_parser("status", help="where the ONNX model is, and whether it is there")
    args = parser.parse_args(argv)
    directory = models_dir(settings.home)
    if args.action == "export":
        was = exported(directory)
        ensure_exported(directory)
        print(f"{'already exported' if was else 'exported'}: {directory}")
        return 0
    if exported(directory):
        print(f"exported: {directory}\n{(directory / MANIFEST_FILE).read_text().strip()}")
        return 0
    print(f"not exported: {directory} (run `perflab embed export`)")
    return 1
