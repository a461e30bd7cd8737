"""Kept tasks: an emulator on a state file knows the tasks an earlier one (a kernel before its restart)
made, as the service does for 24 h; the file never holds the API key, and a bad file never breaks it."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
from typing import Any

import pytest

from wanx_nb.emulator import Emulator, EmulatorSettings

from .conftest import ASYNC, CREATE

START = 1_736_323_200.0  # epoch seconds; a manual clock both emulators share


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def canary_key() -> str:
    return "sk-canary" + "persist" * 3


def kept(path, clock: Clock, **settings: Any) -> Emulator:
    return Emulator(EmulatorSettings(time_scale=1.0, state_path=str(path), **settings), clock=clock)


async def create(emu: Emulator, key: str, model: str = "wanx2.1-t2i-turbo", n: int = 1) -> str:
    body = {"model": model, "input": {"prompt": "a red fox in the snow"}, "parameters": {"n": n}}
    async with emu.client(api_key=key) as http:
        response = await http.post(CREATE, json=body, headers=ASYNC)
    assert response.status_code == 200, response.text
    return str(response.json()["output"]["task_id"])


async def get(emu: Emulator, key: str | None, path: str) -> Any:
    async with emu.client(api_key=key) as http:
        return await http.get(path)


def test_a_restarted_emulator_knows_the_tasks_and_serves_their_images(tmp_path):
    clock, key = Clock(), canary_key()
    state = tmp_path / "tasks.sqlite"
    first = kept(state, clock)
    task_id = asyncio.run(create(first, key, n=2))
    clock.now += 3600  # long done; the first emulator is gone (the kernel restarted)

    second = kept(state, clock)
    answer = asyncio.run(get(second, key, f"/tasks/{task_id}")).json()
    assert answer["output"]["task_status"] == "SUCCEEDED"
    assert answer["usage"]["image_count"] == 2
    url = answer["output"]["results"][0]["url"]
    image = asyncio.run(get(second, None, url))  # a signed URL is fetched without the key, as from OSS
    assert image.status_code == 200 and image.content == first.tasks[task_id].render(0)
    listed = asyncio.run(get(second, key, "/tasks")).json()
    assert [row["task_id"] for row in listed["data"]] == [task_id]


def test_a_task_queued_before_the_restart_keeps_its_place_and_can_be_canceled(tmp_path):
    clock, key = Clock(), canary_key()
    state = tmp_path / "tasks.sqlite"
    first = kept(state, clock)
    # wanx-v1 runs one task at a time: the second waits PENDING behind the first.
    running, queued = (asyncio.run(create(first, key, model="wanx-v1")) for _ in range(2))

    second = kept(state, clock)
    assert asyncio.run(get(second, key, f"/tasks/{running}")).json()["output"]["task_status"] == "RUNNING"
    async def cancel() -> int:
        async with second.client(api_key=key) as http:
            return (await http.post(f"/tasks/{queued}/cancel")).status_code
    assert asyncio.run(cancel()) == 200
    third = kept(state, clock)  # the cancellation was kept too
    assert asyncio.run(get(third, key, f"/tasks/{queued}")).json()["output"]["task_status"] == "CANCELED"
    # A new task of the account queues behind the kept running one: the service's slot is still taken.
    fresh = asyncio.run(create(third, key, model="wanx-v1"))
    assert asyncio.run(get(third, key, f"/tasks/{fresh}")).json()["output"]["task_status"] == "PENDING"


def test_another_account_does_not_see_the_kept_tasks_and_the_file_never_holds_a_key(tmp_path):
    clock, key = Clock(), canary_key()
    state = tmp_path / "tasks.sqlite"
    task_id = asyncio.run(create(kept(state, clock), key))
    second = kept(state, clock)
    assert asyncio.run(get(second, "sk-canary-someone-else", f"/tasks/{task_id}")).json()["output"]["task_status"] == "UNKNOWN"
    assert asyncio.run(get(second, key, f"/tasks/{task_id}")).json()["output"]["task_status"] != "UNKNOWN"
    for name in os.listdir(tmp_path):  # the database and its WAL files
        assert key.encode() not in (tmp_path / name).read_bytes()


def test_tasks_past_the_24_hours_are_forgotten(tmp_path):
    clock, key = Clock(), canary_key()
    state = tmp_path / "tasks.sqlite"
    task_id = asyncio.run(create(kept(state, clock), key))
    clock.now += 24 * 3600 + 1
    assert asyncio.run(get(kept(state, clock), key, f"/tasks/{task_id}")).json()["output"]["task_status"] == "UNKNOWN"


def test_an_unreadable_row_is_skipped_and_an_unusable_file_leaves_the_emulator_working(tmp_path, caplog):
    clock, key = Clock(), canary_key()
    state = tmp_path / "tasks.sqlite"
    good = asyncio.run(create(kept(state, clock), key))
    with sqlite3.connect(state) as db:
        account_hash = db.execute("SELECT account_hash FROM tasks").fetchone()[0]
        db.execute("INSERT INTO tasks VALUES ('broken', ?, '{\"not\": \"a task\"}')", (account_hash,))
    assert asyncio.run(get(kept(state, clock), key, f"/tasks/{good}")).json()["output"]["task_status"] != "UNKNOWN"

    with caplog.at_level(logging.WARNING, logger="wanx_nb.emulator"):
        in_memory = kept(tmp_path, clock)  # a folder is no database
    assert "tasks kept in memory only" in caplog.text
    task_id = asyncio.run(create(in_memory, key))
    assert asyncio.run(get(in_memory, key, f"/tasks/{task_id}")).json()["output"]["task_status"] != "UNKNOWN"


def test_a_state_file_needs_the_real_clock():
    with pytest.raises(ValueError, match="state_path needs the real clock"):
        EmulatorSettings(clock="fake", state_path="tasks.sqlite")


# The user's path: no key, so the CLI runs the default in-process emulator; the process dies while it
# waits; a new process's `resume` saves the image from the task the first one created.
KILLED_CHILD = """
import os, sys, threading
from wanx_nb import cli
store = sys.argv[1]
def watch():
    from wanx_nb._store import Store
    while True:
        if os.path.exists(store) and any(e.task_id for e in Store(store).unfinished()):
            os._exit(9)  # the kernel dies once the task is created, before anything is saved
        threading.Event().wait(0.02)
threading.Thread(target=watch, daemon=True).start()
cli.main(["--store", store, "generate", "a red fox in the snow", "-m", "wanx2.1-t2i-plus", "-o", sys.argv[2]])
os._exit(0)
"""


def test_resume_in_a_new_keyless_process_saves_what_a_killed_one_started(tmp_path):
    from wanx_nb._store import Store

    env = {k: v for k, v in os.environ.items() if k not in ("DASHSCOPE_API_KEY", "DASHSCOPE_HTTP_BASE_URL")}
    env["WANX_NB_EMULATOR_STATE"] = str(tmp_path / "emulator-tasks.sqlite")
    store = tmp_path / "store"
    killed = subprocess.run([sys.executable, "-c", KILLED_CHILD, str(store), str(tmp_path / "out")], env=env,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == 9, killed.stderr
    assert [e.saved_images for e in Store(store).unfinished()] == [0]

    resumed = subprocess.run([sys.executable, "-m", "wanx_nb.cli", "--store", str(store), "resume"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert not Store(store).unfinished()
    saved = [p for p in (store / "images").rglob("*.png")] if (store / "images").exists() else list(store.rglob("*.png"))
    assert len(saved) == 1, resumed.stdout


def test_a_kernel_keeps_its_tasks_while_another_is_creating_the_same_file(tmp_path):
    """Two kernels starting the keyless emulator at once share one new file: SQLite refuses the switch to
    WAL mode at once while the other holds a lock, and the emulator would silently keep tasks in memory
    only. It waits for the lock instead."""
    import threading

    from wanx_nb.emulator._persist import TaskFile

    path = tmp_path / "emulator-tasks.sqlite"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE IF NOT EXISTS starting (x)")
    released = threading.Timer(0.3, lambda: (other.execute("COMMIT"), other.close()))
    released.start()
    try:
        kept = TaskFile(path)
    finally:
        released.join()
    assert kept.tasks_of("an account", submitted_after=0) == []
    kept.close()
