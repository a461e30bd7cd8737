"""Run every benchmark and print a summary of the figures.

Each benchmark runs as its own process (`batch.py` at 16 and 200 requests plus one real-time run,
then `notebook_bytes.py`, `memory.py`, `load_ext.py` with cached bytecode and again with `--cold`, `history.py` on stores of 1k/10k/50k entries, and `catalog.py`: 4 prompts x the 2026 catalog),
so none of them inherits another's imports or event loop. The whole run takes about 22 minutes (the
batches run at a tenth of the real task durations, the real-time one at full length). Their output
is shown as it comes, and the key lines are collected at the end.

Run: `.venv/bin/python bench/run.py`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHMARKS: list[tuple[str, list[str], tuple[str, ...]]] = [
    # (name, arguments, substrings that mark the lines to repeat in the summary)
    ("batch", ["batch.py", "--real-time"], ("x bound", "x its time")),
    ("notebook_bytes", ["notebook_bytes.py"], ("summary:",)),
    ("memory", ["memory.py"], ("summary (",)),
    ("load_ext", ["load_ext.py"], ("summary:",)),
    ("load_ext --cold", ["load_ext.py", "--cold"], ("summary:",)),
    ("history", ["history.py"], ("summary:",)),
    ("catalog", ["catalog.py"], ("summary:",)),
]


def run(args: list[str]) -> tuple[int, list[str], float]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        print(f"  | {line}", end="", flush=True)
        lines.append(line.rstrip("\n"))
    return proc.wait(), lines, time.perf_counter() - start


def main() -> int:
    results = []
    for name, args, marks in BENCHMARKS:
        print(f"== {name}: {' '.join(args)}", flush=True)
        code, lines, wall = run([str(HERE / args[0]), *args[1:]])
        key = [line.strip() for line in lines if any(m in line for m in marks)]
        results.append((name, code, wall, key))
        print(f"== {name}: exit {code} in {wall:.1f} s\n", flush=True)
    print("summary")
    for name, code, wall, key in results:
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"  {name:16} {status}, {wall:.1f} s")
        for line in key or ["(no figures printed)"]:
            print(f"      {line.removeprefix('summary: ')}")
    return 0 if all(code == 0 for _, code, _, _ in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
