"""Benchmark: a batch across 4 models (n=1) against the served emulator, with realistic relative task
durations and the real limits (2 submits/s per model, concurrency 2/2/2/1), at 16 and 200 requests.

In one run, against the same served emulator (each pattern with its own account, one after another):
- wanx_nb's `AsyncWanxClient.generate_many`, and `Session.generate_many`: the path `%%wanx` takes, which
  also journals every request and saves every image in a store (the SDK patterns keep only URLs);
- the official SDK as users really run it concurrently (bench/sdk_patterns.py): a 16-thread pool over
  `ImageSynthesis.call()`, and `async_call()` for all then `wait()` on each, both retrying a 429 after
  1 s; and the sequential `call()` loop (16 requests only: at 200 it takes as long as all tasks added).
  The SDK's poll sleeps are scaled like the tasks (see `scaled_sdk_sleeps`).
Every pattern first runs one request (its own account), so each is measured warm.
Each wall time is printed as a ratio to the lower bound the limits allow (an exact schedule computed
from the same durations and limits), with the median detection lag: from a task's end on the server
to the caller having it.

`--real-time` runs once at the real durations (time_scale 1; slow: minutes) and reports the median
detection lag of wanx_nb against the SDK's own schedule on the same tasks.

Goal (issue 10): wanx_nb <= 1.02x the bound and below both concurrent SDK patterns.
Run: `.venv/bin/python bench/batch.py [--time-scale 0.1] [--sizes 16,200] [--real-time]`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import heapq
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from sdk_patterns import PATTERNS, scaled_sdk_sleeps

from wanx_nb._client import AsyncWanxClient
from wanx_nb._constants import QUERY_QPS
from wanx_nb._models import Task
from wanx_nb._registry import get_model
from wanx_nb._request import GenerationRequest
from wanx_nb._run_events import Phase, Progress
from wanx_nb._scheduler import Scheduler
from wanx_nb._session import Session
from wanx_nb.emulator import EmulatorSettings, running_server

MODELS = ["wanx2.1-t2i-plus", "wanx2.1-t2i-turbo", "wanx2.0-t2i-turbo", "wanx-v1"]
PROMPTS = [
    "生成一张新年祝福贺卡，背景有白雪，放鞭炮的小孩，蛇形成文案2025，并写上HAPPY NEW YEAR。",
    "一个用针毡制作的圣诞老人手持礼物，旁边站着一只白色的猫咪，背景中有许多五颜六色的礼物。",
    "中国女孩，圆脸，看着镜头，优雅的民族服装，商业摄影，室外，电影级光照，半身特写，精致的淡妆，锐利的边缘。",
    "高清摄影写真，一只布偶猫慵懒地躺在复古木质窗台上。",
]
SEQUENTIAL_MAX = 16  # the sequential loop is run only up to this many requests


def requests(count: int) -> list[GenerationRequest]:
    """`count` requests spread evenly over the models (model k % 4), prompts cycling, distinct seeds."""
    return [
        GenerationRequest(PROMPTS[(k // len(MODELS)) % len(PROMPTS)], model=MODELS[k % len(MODELS)], n=1, seed=42 + k)
        for k in range(count)
    ]


def lower_bound(reqs: list[GenerationRequest], time_scale: float, window: float = 1.0) -> float:
    """The earliest the last task can finish under the limits, with zero client overhead.

    Per model (limits are per model): the k-th submit may not be earlier than the window allows
    (submit_rps per `window`), a task starts when submitted and a concurrency slot is free, and runs
    for its scaled duration. Models do not share limits, so the bound is the slowest model's finish.
    """
    finish = 0.0
    for model in {r.model for r in reqs}:
        spec = get_model(model)
        mine = [r for r in reqs if r.model == model]
        durations = [spec.expected_seconds(r.effective_prompt_extend) * time_scale for r in mine]
        cap = int(spec.submit_rps * window)
        running: list[float] = []  # end times of the tasks holding a slot (a heap)
        for k, duration in enumerate(durations):
            submit = (k // cap) * window
            free_at = heapq.heappop(running) if len(running) >= spec.concurrency else 0.0
            heapq.heappush(running, max(submit, free_at) + duration)
        finish = max(finish, max(running))
    return finish


def scale_poll_budget(client: AsyncWanxClient, time_scale: float) -> None:
    """Our poll budget (QUERY_QPS) scaled like the tasks, the SDK's sleeps and the service's limit."""
    client._scheduler = Scheduler(clock=client._clock, sleep=client._sleep, query_qps=QUERY_QPS / time_scale)


def check_all_succeeded(who: str, outcomes: list[Any]) -> None:
    failed = [r for r in outcomes if isinstance(r, BaseException)]
    if failed:
        raise SystemExit(f"{who}: {len(failed)} request(s) failed: {failed[0]}")


def run_ours(base_url: str, api_key: str, reqs: list[GenerationRequest], time_scale: float = 1.0) -> dict[str, float]:
    seen: dict[str, float] = {}

    def on_status(task: Task) -> None:
        if task.status.is_terminal:
            seen[task.task_id] = time.time()

    async def run() -> None:
        async with AsyncWanxClient(api_key=api_key, base_url=base_url) as client:
            scale_poll_budget(client, time_scale)
            check_all_succeeded("wanx_nb", await client.generate_many(reqs, on_status=on_status))

    asyncio.run(run())
    return seen


def run_session(
    base_url: str, api_key: str, reqs: list[GenerationRequest], time_scale: float = 1.0
) -> dict[str, float]:
    """`Session.generate_many` on a fresh store: journal, downloads and saves included."""
    seen: dict[str, float] = {}

    def on_progress(event: Progress) -> None:
        if event.task_id and event.phase in _SEEN_DONE:
            seen.setdefault(event.task_id, time.time())  # the client has the final task

    with tempfile.TemporaryDirectory() as store:
        session = Session(api_key=api_key, base_url=base_url, store=store)
        try:
            scale_poll_budget(session.client(), time_scale)
            check_all_succeeded("wanx_nb Session", session.generate_many(reqs, on_progress=on_progress))
        finally:
            session.close()
    return seen


_SEEN_DONE = {Phase.DOWNLOADING, Phase.FAILED, Phase.CANCELED}
OURS = {"wanx_nb generate_many": run_ours, "wanx_nb Session (journal+store)": run_session}


def measure(
    server: Any, name: str, run: Callable[..., dict[str, float]], reqs: list[GenerationRequest]
) -> tuple[float, float]:
    """(wall seconds, median detection lag seconds) of one pattern, on its own account."""
    api_key = f"sk-bench-{name.split()[0].lower()}-{len(reqs)}-{abs(hash(name)) % 10_000}"
    start = time.perf_counter()
    seen = run(server.base_url, api_key, reqs)
    wall = time.perf_counter() - start
    tasks = server.emulator.tasks
    lags = [at - tasks[task_id].end_time for task_id, at in seen.items() if task_id in tasks]
    return wall, statistics.median(lags) if lags else float("nan")


def scaled_settings(time_scale: float) -> EmulatorSettings:
    """The emulator with tasks at `time_scale` of their durations, and its per-account query limit
    (20 GETs/s) scaled the same way, since the SDK's poll sleeps are: 16 threads polling every 1 s of
    real time are 160 GETs/s at time_scale 0.1. wanx_nb's own budget (QUERY_QPS, 10 GETs/s) is scaled
    too (`run_ours`). Submit limits stay real (the bound uses them)."""
    return EmulatorSettings(time_scale=time_scale, query_qps=20 / min(time_scale, 1.0))


def batch(count: int, time_scale: float, patterns: list[str]) -> dict[str, float]:
    settings = scaled_settings(time_scale)
    reqs = requests(count)
    bound = lower_bound(reqs, time_scale, settings.rate_window)
    print(f"batch: {count} requests over {len(MODELS)} models (n=1), time_scale={time_scale}", flush=True)
    print(f"  {'lower bound from the limits':32}: {bound:8.2f} s", flush=True)
    ratios: dict[str, float] = {}
    with running_server(settings) as server, scaled_sdk_sleeps(time_scale):
        runs = {
            name: functools.partial(OURS[name], time_scale=time_scale) if name in OURS else PATTERNS[name]
            for name in [*OURS, *patterns]
            if not (name == "SDK sequential call() loop" and count > SEQUENTIAL_MAX)
        }
        # Each pattern once on one request first (its own account): every one is then measured warm, its
        # modules imported and its first-call costs paid, as in a kernel that has run a cell before.
        for name, run in runs.items():
            run(server.base_url, f"sk-bench-warmup-{abs(hash(name)) % 10_000}", reqs[:1])
        for name, run in runs.items():
            wall, lag = measure(server, name, run, reqs)
            ratios[name] = wall / bound
            print(f"  {name:32}: {wall:8.2f} s = {wall / bound:.3f} x bound at {count};"
                  f" median detection lag {lag:.3f} s", flush=True)
    for mine in OURS:
        for name, ratio in ratios.items():
            if name not in OURS:
                print(f"  {mine} vs {name}: {ratios[mine] / ratio:.3f} x its time at {count}", flush=True)
    return ratios


def real_time(count: int, patterns: list[str]) -> None:
    """One run at the real durations: the median detection lag of wanx_nb vs the SDK's schedule."""
    settings = EmulatorSettings(time_scale=1.0)
    reqs = requests(count)
    bound = lower_bound(reqs, 1.0, settings.rate_window)
    print(f"real time: {count} requests, time_scale=1.0 (the SDK's sleeps unscaled); bound {bound:.1f} s", flush=True)
    with running_server(settings) as server:
        for name in ["wanx_nb generate_many", *patterns]:
            run = run_ours if name.startswith("wanx_nb") else PATTERNS[name]
            wall, lag = measure(server, name, run, reqs)
            print(f"  real-time {name:32}: {wall:7.1f} s = {wall / bound:.3f} x bound;"
                  f" median detection lag {lag:.2f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=0.1, help="task durations x this (1.0 = real)")
    parser.add_argument("--sizes", default="16,200", help="comma-separated request counts")
    parser.add_argument("--skip-sdk", action="store_true", help="only wanx_nb")
    parser.add_argument("--real-time", action="store_true", help="also one run at time_scale 1 (minutes)")
    parser.add_argument("--real-time-count", type=int, default=16)
    args = parser.parse_args()
    os.environ.pop("DASHSCOPE_API_KEY", None)
    concurrent = ["SDK 16-thread pool of call()", "SDK async_call all, then wait"]
    patterns = [] if args.skip_sdk else [*concurrent, "SDK sequential call() loop"]
    for count in (int(c) for c in args.sizes.split(",") if c.strip()):
        batch(count, args.time_scale, patterns)
    if args.real_time:
        real_time(args.real_time_count, [] if args.skip_sdk else concurrent[:1])


if __name__ == "__main__":
    main()
