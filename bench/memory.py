"""Benchmark: peak Python memory (tracemalloc) of a batch through `Session.generate_many`, at 200 vs 16
requests, keeping every result (as a notebook does).

The emulator is served by a separate process (`python -m wanx_nb.emulator`), so only the client's
memory is traced: the session, its client, the store, and the results. Each size runs in a fresh
process. Image bytes are released once stored and read back on use, so the peak should not grow with
the number of images.

Goal (issue 10): peak at 200 <= 1.2x the peak at 16.  Run: `.venv/bin/python bench/memory.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator

import httpx

GOAL = 1.2


@contextlib.contextmanager
def emulator_process(time_scale: float) -> Iterator[str]:
    with socket.socket() as probe:  # a free port (released just before the server binds it)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "wanx_nb.emulator", "--port", str(port), "--time-scale", str(time_scale)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{base_url}/tasks/none", headers={"Authorization": "Bearer sk-probe"}, timeout=1)
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the emulator process did not start")
            time.sleep(0.1)
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def peak_bytes(count: int, time_scale: float) -> int:
    from batch import requests

    import wanx_nb._client  # noqa: F401  - imported before tracing: module code is not batch memory
    from wanx_nb._session import Session

    with emulator_process(time_scale) as base_url, tempfile.TemporaryDirectory() as tmp:
        session = Session(api_key="sk-bench-memory", base_url=base_url, store=tmp)
        reqs = requests(count)
        tracemalloc.start()
        results = session.generate_many(reqs)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise SystemExit(f"{len(failed)} request(s) failed: {failed[0]}")
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=0.01)
    parser.add_argument("--count", type=int, help="measure one size in this process and print its peak")
    args = parser.parse_args()
    os.environ.pop("DASHSCOPE_API_KEY", None)
    if args.count:
        print(peak_bytes(args.count, args.time_scale))
        return
    peaks = {}
    for count in (16, 200):
        out = subprocess.run(
            [sys.executable, __file__, "--count", str(count), "--time-scale", str(args.time_scale)],
            check=True, capture_output=True, text=True,
        ).stdout
        peaks[count] = int(out.split()[-1])
        print(f"  peak traced memory at {count:3d} requests: {peaks[count] / 1e6:7.2f} MB", flush=True)
    ratio = peaks[200] / peaks[16]
    print(f"summary: peak memory 200 vs 16 requests: {ratio:.2f} x (goal <= {GOAL})")


if __name__ == "__main__":
    main()
