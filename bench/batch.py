"""Benchmark: one batch of 4 prompts x 4 models (n=1) against the served emulator, with realistic
relative task durations and the real limits (2 submits/s per model, concurrency 2/2/2/1).

Prints the wall time of `generate_many` as a ratio to
- the lower bound the limits allow (an exact schedule computed from the same durations and limits),
- a sequential loop of the official SDK's documented `ImageSynthesis.call()` plus the download of each
  image (as the guide's sample code does), on the same emulator settings, measured in the same run.

Goal: within 1.15x of the bound.  Run: `.venv/bin/python bench/batch.py [--time-scale 0.1]`.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import os
import time

from wanx_nb._client import AsyncWanxClient
from wanx_nb._registry import get_model
from wanx_nb._request import GenerationRequest
from wanx_nb.emulator import EmulatorSettings, running_server

MODELS = ["wanx2.1-t2i-plus", "wanx2.1-t2i-turbo", "wanx2.0-t2i-turbo", "wanx-v1"]
PROMPTS = [
    "生成一张新年祝福贺卡，背景有白雪，放鞭炮的小孩，蛇形成文案2025，并写上HAPPY NEW YEAR。",
    "一个用针毡制作的圣诞老人手持礼物，旁边站着一只白色的猫咪，背景中有许多五颜六色的礼物。",
    "中国女孩，圆脸，看着镜头，优雅的民族服装，商业摄影，室外，电影级光照，半身特写，精致的淡妆，锐利的边缘。",
    "高清摄影写真，一只布偶猫慵懒地躺在复古木质窗台上。",
]


def requests() -> list[GenerationRequest]:
    return [GenerationRequest(p, model=m, n=1, seed=42) for m in MODELS for p in PROMPTS]


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


async def run_ours(base_url: str, reqs: list[GenerationRequest]) -> float:
    async with AsyncWanxClient(api_key="sk-bench-ours", base_url=base_url) as client:
        start = time.perf_counter()
        results = await client.generate_many(reqs)
        wall = time.perf_counter() - start
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise SystemExit(f"wanx_nb: {len(failed)} request(s) failed: {failed[0]}")
    return wall


def run_sdk(base_url: str, reqs: list[GenerationRequest]) -> float:
    import dashscope
    import requests as http
    from dashscope import ImageSynthesis

    dashscope.base_http_api_url = base_url
    start = time.perf_counter()
    for r in reqs:
        kwargs = {k: v for k, v in r.given().items() if k != "prompt"}
        rsp = ImageSynthesis.call(api_key="sk-bench-sdk", model=r.model, prompt=r.prompt, **kwargs)
        if rsp.status_code != 200 or rsp.output.task_status != "SUCCEEDED":
            raise SystemExit(f"sdk: {rsp.status_code} {rsp.code} {rsp.message} {rsp.output}")
        for item in rsp.output.results:
            http.get(item.url, timeout=30).raise_for_status()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=0.1, help="task durations x this (1.0 = real)")
    parser.add_argument("--skip-sdk", action="store_true")
    args = parser.parse_args()
    os.environ.pop("DASHSCOPE_API_KEY", None)
    settings = EmulatorSettings(time_scale=args.time_scale)
    reqs = requests()
    bound = lower_bound(reqs, args.time_scale, settings.rate_window)
    # Separate servers so neither run sees the other's tasks or limits (they are per account anyway).
    with running_server(settings) as server:
        ours = asyncio.run(run_ours(server.base_url, reqs))
    print(f"batch: {len(reqs)} tasks (4 prompts x 4 models, n=1), time_scale={args.time_scale}")
    print(f"  lower bound from the limits : {bound:7.2f} s")
    print(f"  wanx_nb generate_many       : {ours:7.2f} s   = {ours / bound:.3f} x bound (goal <= 1.15)")
    if not args.skip_sdk:
        with running_server(settings) as server:
            sdk = run_sdk(server.base_url, reqs)
        print(f"  official SDK call() loop    : {sdk:7.2f} s   = {sdk / bound:.3f} x bound")
        print(f"  wanx_nb vs SDK loop         : {ours / sdk:.3f} x  ({sdk / ours:.1f} times faster)")


if __name__ == "__main__":
    main()
