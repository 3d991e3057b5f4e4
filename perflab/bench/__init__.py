"""Benchmarks: `perflab bench NAME [--json]`. Each prints figures measured side by side in one run.

Each module here exposes `main(settings, argv) -> int` and parses its own options; the table of them
is `perflab.bench.commands.BENCHES`. With `--json` a benchmark prints one JSON object on one line.
They follow one measurement contract, `perflab.bench.contract` (Config + run(settings, cfg) -> Result).
"""
