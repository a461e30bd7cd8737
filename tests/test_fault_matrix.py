"""Nothing paid is lost: every fault after a create, on every surface, then the documented recovery.

Each case drives a public surface (a Run through the Session, `%%wanx` through IPython, `compare`,
the `wanx-nb` CLI) into one scripted fault of the emulated service or of the store, then runs the
recovery the user is told to run (`%wanx resume`, `Session.resume()`, `wanx-nb resume`) and counts:

    Q  images the service billed and can still serve (an image whose URL expired counts in neither)
    P  those of them saved in the store
    D  creates beyond the requests the case made (a second bill for the same request)
    R  raw tracebacks shown to the user (an exception escaping a surface, or "Traceback" in its output)
    H  calls that did not end within a generous deadline

The last test prints `paid images saved P/Q; double-billed D; raw tracebacks R; hangs H` for the
whole matrix and asserts P == Q and D == R == H == 0; each case also asserts its own share.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from IPython.utils.capture import capture_output

from wanx_nb import cli
from wanx_nb._client import AsyncWanxClient
from wanx_nb._exceptions import RunInterruptedError, WanxError
from wanx_nb._request import GenerationRequest
from wanx_nb._session import Session, set_session
from wanx_nb.comparison import compare
from wanx_nb.emulator import Emulator, EmulatorSettings, Fault

DEADLINE = 60.0  # seconds of real time before a call counts as a hang
PROMPT = "a red fox in snow"


@dataclass
class Tally:
    paid: int = 0
    saved: int = 0
    double_billed: int = 0
    tracebacks: int = 0
    hangs: int = 0
    cases: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"paid images saved {self.saved}/{self.paid}; double-billed {self.double_billed}; "
            f"raw tracebacks {self.tracebacks}; hangs {self.hangs}"
        )


TALLY = Tally()


# ---- the cases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    route: str | None = None  # the emulator route the faults are scripted on
    faults: tuple[Fault, ...] = ()
    model: str = "wanx2.1-t2i-turbo"
    n: int = 2
    expired: bool = False  # the image URLs answer "expired" for good: those images count in neither P nor Q

    def __str__(self) -> str:
        return self.name


def many(fault: Fault, count: int = 8) -> tuple[Fault, ...]:
    """More of the same fault than the client retries: the call itself fails."""
    return (fault,) * count


HTML = b"<html><body><h1>502 Bad Gateway</h1></body></html>"

CREATE = [
    Case("create 500 after the task was made", "create", (Fault.status(500, after=True),)),
    Case("create 500 before anything was made", "create", (Fault.status(500),)),
    Case("create 502 after", "create", (Fault.status(502, after=True),)),
    Case("create 503 (refused, retried)", "create", (Fault.status(503),)),
    Case("create 504 after", "create", (Fault.status(504, after=True),)),
    Case("create 429 with Retry-After", "create", (Fault.status(429, retry_after=1),)),
    Case("create 429 without Retry-After", "create", (Fault.status(429),)),
    Case("create dropped after it was received", "create", (Fault.drop_after(),)),
    Case("create dropped before it was sent", "create", (Fault.drop_before(),)),
    Case("create answered with non-JSON after", "create", (Fault.body(b"ok", content_type="text/plain", after=True),)),
    Case("create answered with an HTML page after", "create", (Fault.body(HTML, after=True),)),
    Case("create answered with an HTML page before", "create", (Fault.body(HTML),)),
]
POLL = [
    Case("poll 500 until retries run out", "query", many(Fault.status(500))),
    Case("poll 502 until retries run out", "query", many(Fault.status(502))),
    Case("poll 503 until retries run out", "query", many(Fault.status(503))),
    Case("poll 504 until retries run out", "query", many(Fault.status(504))),
    Case("poll 429 with Retry-After", "query", many(Fault.status(429, retry_after=1), 3)),
    Case("poll 429 without Retry-After until retries run out", "query", many(Fault.status(429))),
    Case("poll dropped after it was received", "query", many(Fault.drop_after())),
    Case("poll answered with an HTML page", "query", many(Fault.body(HTML))),
    Case("poll answered with an unrecognised status", "query", (Fault.task_status("QUEUED"),)),
    Case("task FAILED", "create", (Fault.outcome("FAILED"),)),
    Case("task partly failed", "create", (Fault.outcome("PARTIAL", failed=(1,)),)),
    Case("task lost by the service (UNKNOWN)", "create", (Fault.outcome("UNKNOWN"),)),
]
DOWNLOAD = [
    Case("download 500 until retries run out", "image", many(Fault.status(500))),
    Case("download 502", "image", many(Fault.status(502))),
    Case("download 503", "image", many(Fault.status(503))),
    Case("download 504", "image", many(Fault.status(504))),
    Case("download 429", "image", many(Fault.status(429))),
    Case("download dropped", "image", many(Fault.drop_after())),
    Case("download 403 expired URL", "image", many(Fault.url_expired(), 40), expired=True),
    Case("download 403 without expiry", "image", many(Fault.status(403))),
    Case("download 404", "image", many(Fault.status(404))),
    Case("download truncated (honest length)", "image", many(Fault.truncated(0.4))),
    Case("download truncated (cut connection)", "image", many(Fault.truncated(0.4, honest_length=False))),
    Case("download corrupt bytes", "image", many(Fault.corrupt())),
    Case("download HTML instead of an image", "image", many(Fault.body(HTML))),
    Case("download decompression bomb", "image", many(Fault.decompression_bomb())),
]
RUN_CASES = CREATE + POLL + DOWNLOAD
MAGIC_CASES = [c for c in RUN_CASES if c.name in {
    "create 500 after the task was made", "create dropped after it was received", "create 504 after",
    "create answered with non-JSON after", "poll 500 until retries run out", "poll answered with an unrecognised status",
    "task FAILED", "task partly failed", "download 500 until retries run out", "download corrupt bytes",
    "download 403 expired URL", "download decompression bomb", "download truncated (cut connection)",
}]
CLI_CASES = [c for c in RUN_CASES if c.name in {
    "create 502 after", "create answered with an HTML page after", "poll dropped after it was received",
    "task lost by the service (UNKNOWN)", "download HTML instead of an image", "download 404",
    "download truncated (honest length)",
}]
COMPARE_CASES = [c for c in RUN_CASES if c.name in {
    "create 500 after the task was made", "poll 502 until retries run out", "download dropped",
    "download corrupt bytes", "task partly failed",
}]


# ---- the harness ----------------------------------------------------------------------------------


def fast_session(store, emulator: Emulator) -> Session:
    """A session on `emulator` whose client sleeps (backoff, Retry-After, polls) are compressed 100x."""
    client = AsyncWanxClient(emulator=emulator)
    client._sleep = lambda seconds: asyncio.sleep(seconds / 100)
    return Session(store=store, client=client)


def new_emulator() -> Emulator:
    # query_qps off: with compressed sleeps the client polls faster than a real one could.
    return Emulator(EmulatorSettings(time_scale=0.001, query_qps=None))


def in_time(call: Callable[[], Any]) -> tuple[Any, BaseException | None, bool]:
    """(value, exception, finished) of `call()` run on a thread, waited for DEADLINE seconds."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            box["error"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    return box.get("value"), box.get("error"), not thread.is_alive()


def count(case: Case, emulator: Emulator, session: Session, requests: int, tracebacks: int, hangs: int) -> Tally:
    """This case's share of the tally, from the service's own records and the store's."""
    now = emulator.now()
    paid = saved = 0
    for task_id, task in emulator.tasks.items():
        if task.lost or task.status_at(now) != "SUCCEEDED" or case.expired:
            continue
        billed = task.succeeded_items
        paid += len(billed)
        stored = session.store.get(task_id)
        saved_indices = {im.index for im in stored.images if im.path} if stored else set()
        saved += sum(1 for i in billed if i in saved_indices)
    creates = len({t for t in emulator.tasks})
    share = Tally(paid, saved, max(0, creates - requests), tracebacks, hangs, [case.name])
    TALLY.paid += share.paid
    TALLY.saved += share.saved
    TALLY.double_billed += share.double_billed
    TALLY.tracebacks += share.tracebacks
    TALLY.hangs += share.hangs
    TALLY.cases.append(case.name)
    return share


def assert_nothing_lost(share: Tally) -> None:
    assert (share.saved, share.double_billed, share.tracebacks, share.hangs) == (share.paid, 0, 0, 0), share.line()


def drain_faults(emulator: Emulator, case: Case) -> None:
    """A one-off fault is a passing fault: what is left of it is not there when the user resumes later."""
    if case.route and not case.expired:
        emulator.backend._scripts[case.route].clear()  # noqa: SLF001 - the emulator's own queue


@pytest.fixture
def shell(wanx_shell):
    return wanx_shell


# ---- the surfaces ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", RUN_CASES, ids=str)
def test_run_surface(case, tmp_path):
    emulator = new_emulator()
    session = fast_session(tmp_path / "store", emulator)
    if case.route:
        emulator.script(case.route, *case.faults)
    request = GenerationRequest(PROMPT, model=case.model, n=case.n, seed=11)
    outcomes, error, finished = in_time(lambda: session.start([request]).result())
    tracebacks = 0 if error is None or isinstance(error, WanxError) else 1
    drain_faults(emulator, case)
    report, error, resumed = in_time(session.resume)
    tracebacks += 0 if error is None else 1
    assert_nothing_lost(count(case, emulator, session, 1, tracebacks, int(not finished) + int(not resumed)))


def run_cell(shell, source: str) -> tuple[str, BaseException | None]:
    with capture_output() as captured:
        outcome = shell.run_cell(source)
    text = captured.stdout + captured.stderr + "".join(str(o.data) for o in captured.outputs)
    return text, outcome.error_in_exec


@pytest.mark.parametrize("case", MAGIC_CASES, ids=str)
def test_magic_surface(case, tmp_path, shell):
    emulator = new_emulator()
    session = fast_session(tmp_path / "store", emulator)
    set_session(session)
    if case.route:
        emulator.script(case.route, *case.faults)
    (text, error), _, finished = in_time(lambda: run_cell(shell, f"%%wanx -m {case.model} -n {case.n} --seed 11\n{PROMPT}"))
    drain_faults(emulator, case)
    (resume_text, resume_error), _, resumed = in_time(lambda: run_cell(shell, "%wanx resume"))
    shown = text + resume_text
    tracebacks = shown.count("Traceback (most recent call last)") + int(resume_error is not None)
    if "%wanx resume" not in text:  # the next step of a request that may be billed is never a plain retry
        assert "unfinished" not in text.lower()
    else:
        assert "retry" not in text.lower().split("%wanx resume")[0][-200:]
    assert_nothing_lost(count(case, emulator, session, 1, tracebacks, int(not finished) + int(not resumed)))


@pytest.mark.parametrize("case", COMPARE_CASES, ids=str)
def test_compare_surface(case, tmp_path):
    emulator = new_emulator()
    session = fast_session(tmp_path / "store", emulator)
    if case.route:
        emulator.script(case.route, *case.faults)
    models = ["wanx2.1-t2i-turbo", "wanx2.0-t2i-turbo"]
    grid, error, finished = in_time(lambda: compare([PROMPT], models=models, seed=11, session=session, display=False))
    tracebacks = 0 if error is None else 1
    if grid is not None:
        grid.html()  # what the user sees must render whatever the cells hold
    drain_faults(emulator, case)
    _, error, resumed = in_time(session.resume)
    tracebacks += 0 if error is None else 1
    assert_nothing_lost(count(case, emulator, session, len(models), tracebacks, int(not finished) + int(not resumed)))


@pytest.mark.parametrize("case", CLI_CASES, ids=str)
def test_cli_surface(case, tmp_path, monkeypatch):
    from wanx_nb.emulator import _emulator as emulator_module

    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.delenv("DASHSCOPE_HTTP_BASE_URL", raising=False)
    emulator = new_emulator()
    monkeypatch.setattr(emulator_module, "_default", emulator)  # the keyless default of this process
    store = tmp_path / "store"
    if case.route:
        emulator.script(case.route, *case.faults)

    def main(*argv: str) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["--store", str(store), *argv])
        return code, out.getvalue() + err.getvalue()

    (code, text), error, finished = in_time(
        lambda: main("generate", PROMPT, "-m", case.model, "-n", str(case.n), "--seed", "11", "-o", str(tmp_path / "out"))
    )
    drain_faults(emulator, case)
    (resume_code, resume_text), resume_error, resumed = in_time(lambda: main("resume"))
    tracebacks = (text + resume_text).count("Traceback") + int(error is not None) + int(resume_error is not None)
    session = Session(store=store, emulator=emulator)
    assert_nothing_lost(count(case, emulator, session, 1, tracebacks, int(not finished) + int(not resumed)))


def test_an_interrupt_while_waiting_keeps_what_runs_and_resume_saves_it(tmp_path):
    emulator = Emulator(EmulatorSettings(time_scale=0.02, query_qps=None))  # wanx-v1 runs about 0.6 s
    session = fast_session(tmp_path / "store", emulator)
    requests = [GenerationRequest(PROMPT, model="wanx-v1", n=1, seed=i) for i in range(3)]
    run = session.start(requests)

    def interrupt_once_running() -> None:
        if any(t.status_at(emulator.now()) == "RUNNING" for t in emulator.tasks.values()):
            raise KeyboardInterrupt

    _, error, finished = in_time(lambda: run.result(on_tick=interrupt_once_running, tick=0.01))
    assert isinstance(error, RunInterruptedError)
    _, resume_error, resumed = in_time(session.resume)
    while any(t.status_at(emulator.now()) in ("PENDING", "RUNNING") for t in emulator.tasks.values()):
        in_time(session.resume)  # the one still running is saved once it ends
    case = Case("interrupt while waiting")
    assert_nothing_lost(count(case, emulator, session, len(requests), int(resume_error is not None),
                              int(not finished) + int(not resumed)))


# ---- the store and the process --------------------------------------------------------------------


def test_store_not_writable_refuses_before_anything_is_sent(tmp_path, shell):
    emulator = new_emulator()
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    session = fast_session(blocked, emulator)
    set_session(session)
    with pytest.raises(WanxError) as caught:
        session.start([GenerationRequest(PROMPT, n=1, seed=1)])
    assert "nothing was sent" in str(caught.value)
    text, error = run_cell(shell, f"%%wanx -n 1\n{PROMPT}")
    assert "Traceback" not in text and "nothing was sent" in text
    case = Case("store not writable")
    assert_nothing_lost(count(case, emulator, session, 0, text.count("Traceback"), 0))


def test_a_damaged_index_refuses_then_rebuild_recovers_every_image(tmp_path):
    emulator = new_emulator()
    store = tmp_path / "store"
    session = fast_session(store, emulator)
    (first,) = session.start([GenerationRequest(PROMPT, n=2, seed=1)]).result()
    session.store.close()
    (store / "index.sqlite").write_bytes(b"garbage, not SQLite" * 100)
    for name in ("index.sqlite-wal", "index.sqlite-shm"):
        (store / name).unlink(missing_ok=True)
    damaged = fast_session(store, emulator)
    with pytest.raises(WanxError) as caught:
        damaged.start([GenerationRequest(PROMPT, n=2, seed=2)])
    assert "rebuild" in str(caught.value) and len(emulator.tasks) == 1  # nothing more was sent
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["store", "rebuild", str(store)]) == 0
    rebuilt = fast_session(store, emulator)
    case = Case("damaged index, then wanx-nb store rebuild")
    assert_nothing_lost(count(case, emulator, rebuilt, 1, 0, 0))


def test_the_store_deleted_mid_run_still_keeps_every_paid_image(tmp_path):
    import shutil

    emulator = Emulator(EmulatorSettings(time_scale=0.02, query_qps=None))  # long enough to delete under it
    store = tmp_path / "store"
    session = fast_session(store, emulator)
    run = session.start([GenerationRequest(PROMPT, model="wanx-v1", n=2, seed=3)])
    deadline = DEADLINE
    while not emulator.tasks and deadline > 0:
        threading.Event().wait(0.01)
        deadline -= 0.01
    shutil.rmtree(store)  # someone cleans up the folder while the task runs
    _, error, finished = in_time(run.result)
    _, resume_error, resumed = in_time(session.resume)
    case = Case("store deleted mid-run")
    tracebacks = int(error is not None) + int(resume_error is not None)
    assert_nothing_lost(count(case, emulator, session, 1, tracebacks, int(not finished) + int(not resumed)))


# A CLI process pointed at a served emulator; `limit_bytes` caps the size of any file it writes
# (RLIMIT_FSIZE, with SIGXFSZ ignored: writes fail with EFBIG, as on a full disk).
CHILD = """
import resource, signal, sys
limit = int(sys.argv[1])
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from wanx_nb import cli
sys.exit(cli.main(sys.argv[2:]))
"""


def child(server, store, *argv: str, limit_bytes: int = 0, wait: bool = True):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DASHSCOPE_HTTP_BASE_URL": server.base_url, "DASHSCOPE_API_KEY": "sk-matrix-child-0000"}
    command = [sys.executable, "-c", CHILD, str(limit_bytes), "--store", str(store), *argv]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if wait:
        out, err = process.communicate(timeout=DEADLINE)
        return process.returncode, out + err
    return process


def served_session(server, store) -> Session:
    return Session(store=store, base_url=server.base_url, api_key="sk-matrix-child-0000")


@pytest.fixture
def server():
    from wanx_nb.emulator.server import running_server

    with running_server(EmulatorSettings(time_scale=0.05, query_qps=None)) as running:
        yield running


def test_a_full_disk_after_the_create_loses_nothing(tmp_path, server):
    store = tmp_path / "store"
    # Room for the journal's small writes, none for a 1024x1024 PNG (about 170 kB).
    code, text = child(server, store, "generate", PROMPT, "-n", "2", "--seed", "4", "-o", str(tmp_path / "out"),
                       limit_bytes=120_000)
    assert code != 0 and "Traceback" not in text and "resume" in text, text
    print(text)
    session = served_session(server, store)
    _, error, resumed = in_time(session.resume)
    case = Case("full disk after the create")
    assert_nothing_lost(count(case, server.emulator, session, 1, int(error is not None), int(not resumed)))


def test_a_process_killed_while_waiting_loses_nothing(tmp_path, server):
    import signal as signals

    from wanx_nb._store import Store

    store = tmp_path / "store"
    process = child(server, store, "generate", PROMPT, "-m", "wanx-v1", "-n", "2", "--seed", "5", "-o",
                    str(tmp_path / "out"), wait=False)
    deadline = DEADLINE
    while deadline > 0 and not (store.exists() and any(e.task_id for e in Store(store).unfinished())):
        threading.Event().wait(0.02)
        deadline -= 0.02
    process.send_signal(signals.SIGKILL)  # the kernel dies mid-wait
    process.communicate(timeout=DEADLINE)
    assert process.returncode == -signals.SIGKILL  # it died before it could save anything
    assert not any(e.saved_images for e in Store(store).unfinished())
    session = served_session(server, store)
    _, error, resumed = in_time(session.resume)
    while any(t.status_at(server.emulator.now()) in ("PENDING", "RUNNING") for t in server.emulator.tasks.values()):
        in_time(session.resume)
    case = Case("process killed while waiting")
    assert_nothing_lost(count(case, server.emulator, session, 1, int(error is not None), int(not resumed)))


def test_two_processes_sharing_one_store_keep_each_others_images(tmp_path, server):
    store = tmp_path / "store"
    processes = [
        child(server, store, "generate", PROMPT, "-n", "2", "--seed", str(seed), "-o", str(tmp_path / f"out{seed}"),
              wait=False)
        for seed in (6, 7)
    ]
    outputs = [p.communicate(timeout=DEADLINE) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    session = served_session(server, store)
    rows = session.store.history(limit=None)
    assert sorted(r.seed for r in rows) == [6, 7] and len({r.task_id for r in rows}) == 2
    case = Case("two processes, one store")
    tracebacks = sum("Traceback" in out + err for out, err in outputs)
    assert_nothing_lost(count(case, server.emulator, session, 2, tracebacks, 0))


def test_zz_the_matrix_loses_nothing():
    """The summary line of every case above (runs last: pytest keeps file order)."""
    print("\n" + TALLY.line() + f" ({len(TALLY.cases)} cases)")
    assert len(TALLY.cases) >= 60
    assert (TALLY.saved, TALLY.double_billed, TALLY.tracebacks, TALLY.hangs) == (TALLY.paid, 0, 0, 0), TALLY.line()
