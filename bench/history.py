"""Benchmark: `Store.history()` on stores of 1k / 10k / 50k journal entries (two images each).

The stores are filled by bulk SQL into the real schema (the bench only; the library writes one entry at
a time). For each size it prints the median time of `history()` by default, filtered by model, by a
common and a rare text, and page 2 (offset 50), each also as a ratio to a bare `SELECT * FROM entries
LIMIT 50` measured on the same store in the same run.

Goal (issue 7): every figure under 50 ms at 50k entries.  Run: `.venv/bin/python bench/history.py [--sizes 1000,50000]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from wanx_nb._journal import replay_key, search_text
from wanx_nb._request import GenerationRequest
from wanx_nb._store import Store

MODELS = ["wanx2.1-t2i-plus", "wanx2.1-t2i-turbo", "wanx2.0-t2i-turbo", "wanx-v1"]
WORDS = ["fox", "whale", "cat", "lantern", "snow", "garden", "city", "mountain", "river", "dragon"]
GOAL_MS = 50.0
REPEATS = 15


def fill(store: Store, count: int) -> None:
    """`count` finished entries with two images each, one minute apart, in one transaction."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    entries, images = [], []
    for i in range(count):
        model = MODELS[i % len(MODELS)]
        prompt = f"a {WORDS[i % len(WORDS)]} and a {WORDS[(i * 7) % len(WORDS)]}, number {i}"
        given = GenerationRequest(prompt, model=model, n=2)
        sent = given.replace(seed=i)
        at = (start + dt.timedelta(minutes=i)).isoformat(timespec="milliseconds")
        entry_id = uuid.uuid4().hex
        actual = prompt + ", highly detailed"
        thumb = str(store.images_dir / f"{i:064x}.png")
        entries.append((
            entry_id, "bench", "emulator", "emulator", "live", "done", model, prompt, replay_key(given),
            json.dumps(given.to_dict()), json.dumps(sent.to_dict()), f"task-{i}", "SUCCEEDED", at, at, at, 2, 2, 0.14,
            json.dumps({"status": "SUCCEEDED", "backend": "emulator"}), actual, search_text(prompt, actual), thumb,
        ))  # fmt: skip
        images += [(entry_id, k, f"{i:063x}{k}", thumb, i + k, "1024*1024", actual) for k in range(2)]
    with store._write() as db:
        db.executemany(
            "INSERT INTO entries (entry_id, run_id, service, backend, mode, state, model, prompt, replay_key, given_json,"
            " sent_json, task_id, status, created_at, sent_at, finished_at, billed_images, saved_images, price_yuan,"
            " result_json, actual_prompt, search_text, thumbnail) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            entries,
        )
        db.executemany("INSERT INTO images (entry_id, idx, sha256, path, seed, size, actual_prompt) VALUES (?,?,?,?,?,?,?)",
                       images)  # fmt: skip
    with store._write() as db:
        db.execute("ANALYZE")


def median_ms(call: Callable[[], object]) -> float:
    call()  # warm the page cache
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def bench(count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store")
        store.check(min_free_bytes=0)
        fill(store, count)
        conn = store._connect()
        figures = {
            "baseline": median_ms(lambda: conn.execute("SELECT * FROM entries LIMIT 50").fetchall()),
            "default": median_ms(lambda: store.history()),
            "model": median_ms(lambda: store.history(model="wanx-v1")),
            "text": median_ms(lambda: store.history(text="lantern")),
            "rare text": median_ms(lambda: store.history(text="number 17")),
            "page 2": median_ms(lambda: store.history(offset=50)),
        }
        assert len(store.history(offset=50)) == 50
        store.close()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    worst = 0.0
    for count in sizes:
        f = bench(count)
        base = f["baseline"]
        parts = [f"{name} {ms:.2f} ms ({ms / base:.1f}x)" for name, ms in f.items() if name != "baseline"]
        print(f"history at {count:>6} entries: baseline {base:.2f} ms; " + "; ".join(parts), flush=True)
        if count == max(sizes):
            worst = max(ms for name, ms in f.items() if name != "baseline")
    verdict = "within" if worst < GOAL_MS else "OVER"
    print(f"summary: history at {max(sizes)} entries: slowest query {worst:.1f} ms, {verdict} the {GOAL_MS:.0f} ms goal")
    return 0 if worst < GOAL_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
