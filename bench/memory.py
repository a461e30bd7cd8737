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

Two measures of each batch's peak:
- resident memory (the kernel process's peak RSS, VmHWM, restarted just before the batch): what a user
  sees their kernel take, interpreter and libraries included;
- traced Python allocations (tracemalloc) made during the batch: it isolates what the batch adds, so
  the kept results (3-4 kB each) weigh against a 1-10 MB base.
A control (`--hold-image-bytes`, summarised for service-weight images) runs the same batch with the
stored images' bytes kept in the results, as before issue 10: the figures must tell it apart.

Goal (issue 10): peak at 200 <= 1.2x the peak at 16.  Run: `.venv/bin/python bench/memory.py`
(`--top 25`: also the biggest allocation sites near each peak, on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import re
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


def restart_peak_rss() -> bool:
    """Linux: restart the process's peak resident memory (VmHWM) from what is resident now."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss() -> int:
    """The process's peak resident memory (VmHWM), bytes."""
    with open("/proc/self/status") as fh:
        return int(re.search(r"VmHWM:\s+(\d+) kB", fh.read()).group(1)) * 1024  # type: ignore[union-attr]


def peak_bytes(
    count: int, time_scale: float, image_weight: str, top: int = 0, hold_image_bytes: bool = False
) -> tuple[int, int, int, int]:
    """One batch: its traced peak; what is still traced once it returned, its results kept; what the
    session still holds once the results are dropped (none of it may grow with the batch); and the
    process's peak resident memory during the batch (0 where it cannot be restarted)."""
    from batch import requests

    import wanx_nb._client  # noqa: F401  - imported before tracing: module code is not batch memory
    from wanx_nb._models import ImageResult
    from wanx_nb._session import Session

    if hold_image_bytes:  # the control: results keep their images' bytes once stored (this process only)
        ImageResult.release = lambda self: False  # type: ignore[method-assign]

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
            gc.collect()
            resident = restart_peak_rss()
            tracemalloc.start()
            results = session.generate_many(reqs)
            kept, peak = tracemalloc.get_traced_memory()
            rss = peak_rss() if resident else 0
            failed = [r for r in results if isinstance(r, BaseException)]
            del results
            gc.collect()
            retained = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
        if failed:
            raise SystemExit(f"{len(failed)} request(s) failed: {failed[0]}")
    if top and hook.snapshot is not None:
        print_top(hook.snapshot, top)
    return peak, kept, retained, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=0.01)
    parser.add_argument("--count", type=int, help="measure one size in this process and print its peak")
    parser.add_argument("--image-weight", choices=("light", "service"), default="light", help=argparse.SUPPRESS)
    parser.add_argument("--hold-image-bytes", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--control-trials", type=int, default=3, help="fresh processes per size for the control")
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
        print(*peak_bytes(args.count, args.time_scale, args.image_weight, args.top, args.hold_image_bytes))
        return
    for weight in args.image_weights:
        summarize(weight, args)
    if "service" in args.image_weights and args.control_trials:
        control(args)


def measure(
    image_weight: str, args: argparse.Namespace, trials: int, hold_image_bytes: bool = False
) -> dict[int, list[tuple[int, ...]]]:
    """`trials` fresh processes per size, interleaved (a change in the machine's load touches both
    sizes alike): each size's (traced peak, kept, held once dropped, resident peak)."""
    runs: dict[int, list[tuple[int, ...]]] = {16: [], 200: []}
    for _ in range(trials):
        for count in (16, 200):
            command = [sys.executable, __file__, "--count", str(count), "--time-scale", str(args.time_scale),
                       "--image-weight", image_weight, "--top", str(args.top)]
            out = subprocess.run(
                command + (["--hold-image-bytes"] if hold_image_bytes else []),
                check=True, stdout=subprocess.PIPE, text=True,
            ).stdout
            runs[count].append(tuple(int(n) for n in out.split()[-4:]))
    return runs


def column(runs: dict[int, list[tuple[int, ...]]], count: int, i: int) -> list[int]:
    return sorted(run[i] for run in runs[count])


def ratio(runs: dict[int, list[tuple[int, ...]]], i: int) -> float:
    return statistics.median(column(runs, 200, i)) / statistics.median(column(runs, 16, i))


def mb(values: list[int]) -> str:
    return ", ".join(f"{v / 1e6:.1f}" if v >= 10e6 else f"{v / 1e6:.2f}" for v in values)


def summarize(image_weight: str, args: argparse.Namespace) -> None:
    print(f"images of {image_weight} weight:", flush=True)
    runs = measure(image_weight, args, args.trials)
    for count in (16, 200):
        print(f"  at {count:3d} requests: resident peaks {mb(column(runs, count, 3))} MB; traced peaks "
              f"{mb(column(runs, count, 0))} MB; traced and kept with the results "
              f"{statistics.median(column(runs, count, 1)) / 1e6:.2f} MB; held once they are dropped "
              f"{statistics.median(column(runs, count, 2)) / 1e6:.2f} MB", flush=True)
    worst = max(column(runs, 200, 0)) / max(column(runs, 16, 0))
    per_result = (statistics.median(column(runs, 200, 1)) - statistics.median(column(runs, 16, 1))) / (200 - 16)
    resident = f"{ratio(runs, 3):.2f} x" if min(column(runs, 16, 3)) else "n/a (no /proc/self/clear_refs)"
    print(f"summary ({image_weight} images): peak memory 200 vs 16 requests, by the median of {args.trials}: "
          f"resident {resident} (goal <= {GOAL}); traced {ratio(runs, 0):.2f} x ({worst:.2f} x by the largest); "
          f"a kept result {per_result / 1e3:.1f} kB; held without the results 200 vs 16: {ratio(runs, 2):.2f} x",
          flush=True)


def control(args: argparse.Namespace) -> None:
    """The same service-weight batch with the images' bytes kept in the results once stored."""
    print("control: service-weight images, their bytes kept in the results once stored:", flush=True)
    runs = measure("service", args, args.control_trials, hold_image_bytes=True)
    for count in (16, 200):
        print(f"  at {count:3d} requests: resident peaks {mb(column(runs, count, 3))} MB; traced peaks "
              f"{mb(column(runs, count, 0))} MB", flush=True)
    print(f"summary (control, bytes kept): peak memory 200 vs 16 requests, by the median of {args.control_trials}: "
          f"resident {ratio(runs, 3):.2f} x; traced {ratio(runs, 0):.2f} x", flush=True)


if __name__ == "__main__":
    main()
