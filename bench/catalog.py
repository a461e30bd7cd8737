"""Benchmark: the guide's 4 prompts x the current catalog (every protocol) against the served emulator.

One `AsyncWanxClient.generate_many` over 4 prompts x the 2026 catalog's current models (n=1), in one
region, against a served emulator whose tasks take `time_scale` of their typical durations and whose
submit limits are the real ones (qwen-image-max and qwen-image-2.0-pro: 2 per minute; wan2.6-t2i: 1
per second in Beijing). The wall time is printed as a ratio to the lower bound the limits allow
(`wanx_nb._scheduler.estimate_seconds`: per model, submits kept to the per-second and per-minute
windows, `concurrency` tasks at once, each its typical scaled duration; models side by side).

Goal (issue 9): <= 1.10x the bound. The 2-per-minute models make the bound about a minute, whatever
the time scale.
Run: `.venv/bin/python bench/catalog.py [--time-scale 0.1] [--region beijing]`.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from wanx_nb._client import AsyncWanxClient
from wanx_nb._constants import QUERY_QPS
from wanx_nb._models import GenerationResult
from wanx_nb._registry import CATALOG
from wanx_nb._request import GenerationRequest
from wanx_nb._scheduler import Scheduler, estimate_seconds
from wanx_nb.emulator import EmulatorSettings, running_server

PROMPTS = [
    "生成一张新年祝福贺卡，背景有白雪，放鞭炮的小孩，蛇形成文案2025，并写上HAPPY NEW YEAR。",
    "一个用针毡制作的圣诞老人手持礼物，旁边站着一只白色的猫咪，背景中有许多五颜六色的礼物。",
    "中国女孩，圆脸，看着镜头，优雅的民族服装，商业摄影，室外，电影级光照，半身特写，精致的淡妆，锐利的边缘。",
    "高清摄影写真，一只布偶猫慵懒地躺在复古木质窗台上。",
]
GOAL = 1.10


def grid(region: str) -> list[GenerationRequest]:
    """4 prompts x every current model the region serves, n=1, one seed per prompt (as compare does)."""
    models = [name for name, spec in CATALOG.items() if spec.status == "current" and region in spec.regions]
    return [GenerationRequest(p, model=m, n=1, seed=100 + i) for i, p in enumerate(PROMPTS) for m in models]


async def run_grid(base_url: str, region: str, reqs: list[GenerationRequest], time_scale: float) -> float:
    async with AsyncWanxClient(api_key="sk-bench-" + "0" * 16, base_url=base_url, region=region) as client:
        # The emulator's query limit is scaled like its tasks (see bench/batch.py); so is our poll budget.
        client._scheduler = Scheduler(
            clock=client._clock, sleep=client._sleep, query_qps=QUERY_QPS / time_scale, region=region
        )
        start = time.perf_counter()
        results = await client.generate_many(reqs)
        wall = time.perf_counter() - start
    failed = [r for r in results if not isinstance(r, GenerationResult)]
    if failed:
        raise SystemExit(f"{len(failed)} of {len(reqs)} requests failed, e.g. {failed[0]!r}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=0.1, help="task durations x this (default 0.1)")
    parser.add_argument("--region", default="beijing", help="the region the emulator plays (default beijing)")
    args = parser.parse_args()
    reqs = grid(args.region)
    settings = EmulatorSettings(time_scale=args.time_scale, query_qps=20 / min(args.time_scale, 1.0), region=args.region)
    bound = estimate_seconds(reqs, args.region, time_scale=args.time_scale)
    models = sorted({r.model for r in reqs})
    print(f"catalog: {len(reqs)} requests = {len(PROMPTS)} prompts x {len(models)} models, {args.region}, "
          f"time_scale={args.time_scale}; bound {bound:.1f} s", flush=True)  # fmt: skip
    with running_server(settings) as server:
        wall = asyncio.run(run_grid(server.base_url, args.region, reqs, args.time_scale))
    ratio = wall / bound
    verdict = "ok" if ratio <= GOAL else f"over the {GOAL:.2f}x goal"
    print(f"summary: catalog grid {wall:.1f} s = {ratio:.3f}x bound ({verdict})")


if __name__ == "__main__":
    main()
