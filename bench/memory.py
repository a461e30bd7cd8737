"""Benchmark: peak Python memory (tracemalloc) of a batch through `Session.generate_many`, at 200 vs 16
requests, keeping every result (as a notebook does).

The emulator is served by a separate process (`python -m wanx_nb.emulator`), so only the client's
memory is traced: the session, its client, the store, and the results. Each size runs in a fresh
process. Image bytes are released once stored and read back on use, a run holds the images of at
most DOWNLOADS_AT_ONCE requests and a client receives at most that many at once, so the images in
memory are bounded whatever the number of requests.

One request runs first, untraced (modules imported on first use are not batch memory). Also printed:
what stays allocated with the results, and so the cost of one kept result; and what the session still
holds once the caller drops them (bounded caches and the client: it must not grow with the batch).

A peak is mostly images in flight (a socket read reserves 256 kB; a download and its check hold the
image twice), and how many overlap at the worst moment is chance: a batch of 200 comes to the bound
more often than one of 16. So each size runs `--trials` times (default 5) and the summary compares
the medians, and the largest peaks.

Two image weights, each a summary line: the emulator's light placeholders (60-150 kB a 1024x1024 PNG,
so the in-flight part is small and the kept results weigh most) and images at the service's weight
(`--image-weight service`: about 2 MB, as users download them).

Goal (issue 10): peak at 200 <= 1.2x the peak at 16.  Run: `.venv/bin/python bench/memory.py`
(`--top 25`: also the biggest allocation sites near each peak, on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator

import httpx

GOAL = 1.2


@contextlib.contextmanager
def emulator_process(time_scale: float, image_weight: str = "light") -> Iterator[str]:
    with socket.socket() as probe:  # a free port (released just before the server binds it)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "wanx_nb.emulator", "--port", str(port), "--time-scale", str(time_scale),
         "--image-weight", image_weight],
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


class PeakSnapshots:
    """A profile hook that snapshots the traced allocations each time they pass the last snapshot by
    `step` bytes, so the last snapshot shows what was alive at (about) the peak. Snapshots are not
    traced themselves, but the hook slows the run: use it to find allocation sites, not for the figure."""

    def __init__(self, step: int = 30_000) -> None:
        self.step, self.level = step, 0
        self.snapshot: tracemalloc.Snapshot | None = None

    def __call__(self, frame: object, event: str, arg: object) -> None:
        current = tracemalloc.get_traced_memory()[0]
        if current > self.level + self.step:
            self.level, self.snapshot = current, tracemalloc.take_snapshot()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """On the background loop's thread (where the run works) and on threads started meanwhile."""
        from wanx_nb import _loop

        async def set_profile(hook: object) -> None:
            sys.setprofile(hook)  # type: ignore[arg-type]

        _loop.run_sync(set_profile(self))
        threading.setprofile(self)  # type: ignore[arg-type]
        try:
            yield
        finally:
            threading.setprofile(None)  # type: ignore[arg-type]
            _loop.run_sync(set_profile(None))


def print_top(snapshot: tracemalloc.Snapshot, top: int) -> None:
    """The `top` allocation sites (file:line) by bytes alive in `snapshot`, stderr."""
    stats = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)]).statistics("lineno")
    print(f"  biggest allocation sites near the peak ({snapshot_total(snapshot) / 1e6:.2f} MB traced):", file=sys.stderr)
    for stat in stats[:top]:
        frame = stat.traceback[0]
        print(f"  {stat.size / 1e3:9.1f} kB {stat.count:7d} blocks  {frame.filename}:{frame.lineno}", file=sys.stderr)


def snapshot_total(snapshot: tracemalloc.Snapshot) -> int:
    return sum(trace.size for trace in snapshot.traces)


def peak_bytes(count: int, time_scale: float, image_weight: str, top: int = 0) -> tuple[int, int, int]:
    """Traced bytes of one batch: its peak; what is still allocated once it returned, its results kept;
    and what the session still holds once the results are dropped (none of it may grow with the batch)."""
    from batch import requests

    import wanx_nb._client  # noqa: F401  - imported before tracing: module code is not batch memory
    from wanx_nb._session import Session

    with emulator_process(time_scale, image_weight) as base_url, tempfile.TemporaryDirectory() as tmp:
        # One request first, untraced: the modules a batch imports on first use and its one-time setup
        # are not batch memory, and left in they would pad both peaks alike (flattering the ratio).
        warm = Session(api_key="sk-bench-memory-warmup", base_url=base_url, store=f"{tmp}/warmup")
        warm.generate_many(requests(1))
        warm.close()
        session = Session(api_key="sk-bench-memory", base_url=base_url, store=tmp)
        reqs = requests(count)
        hook = PeakSnapshots()
        with hook.installed() if top else contextlib.nullcontext():
            tracemalloc.start()
            results = session.generate_many(reqs)
            kept, peak = tracemalloc.get_traced_memory()
            failed = [r for r in results if isinstance(r, BaseException)]
            del results
            gc.collect()
            retained = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
        if failed:
            raise SystemExit(f"{len(failed)} request(s) failed: {failed[0]}")
    if top and hook.snapshot is not None:
        print_top(hook.snapshot, top)
    return peak, kept, retained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=0.01)
    parser.add_argument("--count", type=int, help="measure one size in this process and print its peak")
    parser.add_argument("--image-weight", choices=("light", "service"), default="light", help=argparse.SUPPRESS)
    parser.add_argument(
        "--image-weights", nargs="+", choices=("light", "service"), default=["light", "service"],
        help="the emulator's image weights to measure (default both)",
    )
    parser.add_argument("--trials", type=int, default=5, help="fresh processes per size (default 5)")
    parser.add_argument(
        "--top", type=int, default=0, metavar="N",
        help="also print the N biggest allocation sites near each peak (slower; the peaks then include the hook)",
    )
    args = parser.parse_args()
    os.environ.pop("DASHSCOPE_API_KEY", None)
    if args.count:
        print(*peak_bytes(args.count, args.time_scale, args.image_weight, args.top))
        return
    for weight in args.image_weights:
        summarize(weight, args)


def summarize(image_weight: str, args: argparse.Namespace) -> None:
    """Run `args.trials` fresh processes per size, interleaved, and print the comparison."""
    print(f"images of {image_weight} weight:", flush=True)
    peaks: dict[int, list[int]] = {16: [], 200: []}
    kept: dict[int, list[int]] = {16: [], 200: []}
    retained: dict[int, list[int]] = {16: [], 200: []}
    for _ in range(args.trials):
        for count in (16, 200):  # interleaved, so a change in the machine's load touches both sizes alike
            out = subprocess.run(
                [sys.executable, __file__, "--count", str(count), "--time-scale", str(args.time_scale),
                 "--image-weight", image_weight, "--top", str(args.top)],
                check=True, stdout=subprocess.PIPE, text=True,
            ).stdout
            peak, left, held = (int(n) for n in out.split()[-3:])
            peaks[count].append(peak)
            kept[count].append(left)
            retained[count].append(held)
    for count in (16, 200):
        mb = ", ".join(f"{p / 1e6:.2f}" for p in sorted(peaks[count]))
        print(f"  at {count:3d} requests: peaks {mb} MB; kept with the results {statistics.median(kept[count]) / 1e6:.2f} MB; "
              f"held once they are dropped {statistics.median(retained[count]) / 1e6:.2f} MB", flush=True)
    median = statistics.median(peaks[200]) / statistics.median(peaks[16])
    worst = max(peaks[200]) / max(peaks[16])
    per_result = (statistics.median(kept[200]) - statistics.median(kept[16])) / (200 - 16)
    print(f"summary ({image_weight} images): peak memory 200 vs 16 requests: {median:.2f} x by the median of "
          f"{args.trials}, {worst:.2f} x by the largest (goal <= {GOAL}); a kept result {per_result / 1e3:.1f} kB; "
          f"held without the results 200 vs 16: {statistics.median(retained[200]) / statistics.median(retained[16]):.2f} x",
          flush=True)


if __name__ == "__main__":
    main()
