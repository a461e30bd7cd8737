"""Store faults: a damaged, truncated or lost index, a deleted or unwritable directory, a full disk, bad files."""

import datetime as dt
import io
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
from PIL import Image

import wanx_nb
from wanx_nb._exceptions import StoreError
from wanx_nb._journal import EntryState
from wanx_nb._png import check_png, png_dimensions, read_file_provenance
from wanx_nb._request import GenerationRequest
from wanx_nb._store import Store
from wanx_nb.cli import main

from test_journal import T0, image, new_entry, png, sent_entry


def chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)


def bomb_png(width=20000, height=20000) -> bytes:
    """A well-formed PNG whose header claims 400 megapixels (1.2 GB once decoded)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def saved_store(tmp_path, entries=2):
    """A store with `entries` finished entries of two images each; returns (store, entries, served bytes by entry)."""
    store = Store(tmp_path / "store")
    made, served = [], {}
    for k in range(entries):
        e = sent_entry(store, task_id=f"task-{k}", at=T0 + dt.timedelta(minutes=k), prompt=f"fox {k}")
        store.set_billed(e.entry_id, 2)
        images = [image(i, color=(k, i, 99)) for i in range(2)]
        for im in images:
            store.save_image(e.entry_id, im)
        store.finish(e.entry_id, EntryState.DONE, status="SUCCEEDED", result=store.journal_record(e.entry_id))
        made.append(e)
        served[e.entry_id] = [im.data for im in images]
    return store, made, served


# ---- the index ----------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_index_is_a_clear_error_everywhere_and_rebuild_recovers_every_image(tmp_path, damage):
    store, made, served = saved_store(tmp_path)
    store.close()  # checkpoints the WAL into index.sqlite
    db = tmp_path / "store" / "index.sqlite"
    if damage == "garbage":
        db.write_bytes(b"<html>not a database</html>" * 200)
    else:
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 2])
    damaged = Store(tmp_path / "store")
    for call in (damaged.check, damaged.history, damaged.unfinished, lambda: damaged.get("task-0")):
        with pytest.raises(StoreError, match=r"damaged.*wanx-nb store rebuild") as info:
            call()
        assert str(tmp_path / "store") in str(info.value) and info.value.sent is False
    report = damaged.rebuild()
    assert report.moved_aside and os.path.exists(report.moved_aside) and "index.sqlite.damaged-" in report.moved_aside
    assert (report.images, report.unreadable) == (4, [])
    damaged.check()
    for k, e in enumerate(made):
        back = damaged.entry(e.entry_id)
        assert (back.state, back.task_id, back.saved_images, back.billed_images) == (EntryState.DONE, f"task-{k}", 2, 2)
        assert back.sent.seed == 42 and back.given == e.given
        assert [im.data for im in damaged.get(f"task-{k}").images] == served[e.entry_id]
    assert {r.prompt for r in damaged.history()} == {"fox 0", "fox 1"}


def test_rebuild_of_a_healthy_index_keeps_entries_that_have_no_image_yet(tmp_path):
    store, made, _ = saved_store(tmp_path, entries=1)
    waiting = sent_entry(store, task_id="still-running", at=T0 + dt.timedelta(hours=1))
    report = store.rebuild()
    assert report.salvaged == 2
    assert [e.entry_id for e in store.unfinished(now=T0 + dt.timedelta(hours=2))] == [waiting.entry_id]
    assert store.entry(made[0].entry_id).state is EntryState.DONE


def test_a_lost_index_is_rebuilt_from_the_images_on_open(tmp_path):
    store, made, served = saved_store(tmp_path)
    store.close()
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (tmp_path / "store" / name).unlink(missing_ok=True)
    again = Store(tmp_path / "store")
    assert [im.data for im in again.get("task-1").images] == served[made[1].entry_id]


def test_the_previous_schema_is_migrated_in_place_and_its_stuck_tasks_become_resumable(tmp_path):
    root = tmp_path / "v1"
    (root / "images").mkdir(parents=True)
    served = png((1, 2, 3))
    path = root / "images" / "abc.png"
    path.write_bytes(served)
    db = sqlite3.connect(root / "index.sqlite")
    db.executescript(V1_SCHEMA)
    fox = GenerationRequest("fox", n=1, seed=5)
    for task_id, status, result in (("ok-1", "SUCCEEDED", '{"status": "SUCCEEDED", "backend": "emulator"}'),
                                    ("stuck-1", "RUNNING", None)):  # fmt: skip
        db.execute(
            "INSERT INTO tasks (task_id, replay_key, request_key, model, prompt, request_json, given_json, backend, mode,"
            " status, submitted_at, cost_yuan, image_count, result_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (task_id, Store.replay_key(fox), fox.key(), "wanx2.1-t2i-turbo", "fox", '{"prompt": "fox", "n": 1, "seed": 5}',
             '{"prompt": "fox", "n": 1}', "emulator", "live", status, dt.datetime.now(dt.timezone.utc).isoformat(),
             0.14 if result else 0, 1 if result else 0, result),
        )  # fmt: skip
    db.execute("INSERT INTO images (task_id, idx, sha256, path, seed, size) VALUES ('ok-1', 0, 'abc', ?, 5, '1024*1024')",
               (str(path),))  # fmt: skip
    db.commit()
    db.close()
    store = Store(root)
    assert [im.data for im in store.get("ok-1").images] == [served]
    assert [e.task_id for e in store.unfinished()] == ["stuck-1"]  # v1 left it RUNNING: resume never saw it
    assert store.total_cost() == (1, 0.14)
    assert store.integrity().quick_check == "ok"


# ---- the directory ------------------------------------------------------------------------------


def test_a_store_deleted_mid_session_is_recreated_and_keeps_this_sessions_unfinished_entries(tmp_path):
    store, _, _ = saved_store(tmp_path, entries=1)
    live = sent_entry(store, task_id="in-flight")
    shutil.rmtree(tmp_path / "store")
    store.update_status(live.entry_id, "RUNNING")
    store.set_billed(live.entry_id, 1)
    store.save_image(live.entry_id, image(0))
    back = store.entry(live.entry_id)
    assert (back.task_id, back.status, back.saved_images) == ("in-flight", "RUNNING", 1)
    assert (tmp_path / "store" / "index.sqlite").exists()
    assert [e.task_id for e in Store(tmp_path / "store").unfinished(now=T0)] == ["in-flight"]


def test_a_store_path_that_cannot_be_a_directory_fails_the_check(tmp_path):
    (tmp_path / "file").write_text("x")
    store = Store(tmp_path / "file" / "store")
    with pytest.raises(StoreError, match=r"cannot write in .*nothing was sent"):
        store.check()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes through read-only permissions")
def test_a_read_only_store_fails_the_check(tmp_path):
    store, _, _ = saved_store(tmp_path, entries=1)
    store.close()
    for d in (tmp_path / "store" / "images", tmp_path / "store"):
        d.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="cannot write"):
            Store(tmp_path / "store").check()
    finally:
        for d in (tmp_path / "store", tmp_path / "store" / "images"):
            d.chmod(0o755)


def test_too_little_free_space_fails_the_check(tmp_path):
    with pytest.raises(StoreError, match=r"MiB free .*nothing was sent"):
        Store(tmp_path).check(min_free_bytes=1 << 62)


FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    sys.path.insert(0, sys.argv[2])
    from test_journal import image, sent_entry
    from wanx_nb._exceptions import StoreError
    from wanx_nb._store import Store
    import io, os
    from PIL import Image
    store = Store(sys.argv[1])
    entry = sent_entry(store)
    store.set_billed(entry.entry_id, 1)
    big = image(0)
    buf = io.BytesIO()
    Image.frombytes("RGB", (400, 400), os.urandom(480000)).save(buf, format="PNG")
    big.data = buf.getvalue()
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(big.data) // 2, resource.RLIM_INFINITY))
    try:
        store.save_image(entry.entry_id, big)
    except StoreError as exc:
        print("StoreError:", exc)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE as a stand-in for a full disk")
def test_a_write_that_fails_half_way_leaves_nothing_half_written_and_names_the_recovery(tmp_path):
    tests_dir = os.path.dirname(__file__)
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path), tests_dir], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert "StoreError:" in out.stdout and "resume" in out.stdout, out.stderr
    assert "Traceback" not in out.stderr
    assert [p.name for p in (tmp_path / "images").iterdir()] == []  # no temp file, no partial image
    (entry,) = Store(tmp_path).unfinished(now=T0)
    assert (entry.state, entry.saved_images, entry.billed_images) == (EntryState.COLLECTING, 0, 1)


# A disk that really fills up: a small tmpfs, mounted in a child process's own mount namespace (so the mount
# goes with the child). The child imports the same package as this test; its last line of output is JSON.
SMALL_DISK_PREAMBLE = textwrap.dedent(
    """
    import json, os, shutil, sys
    sys.path[:0] = [sys.argv[1], sys.argv[2]]  # the package under test, then the tests' helpers
    from wanx_nb._exceptions import StoreError
    from wanx_nb._store import Store

    def fill(directory):
        fd = os.open(os.path.join(directory, "filler"), os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, bytes(65536)):
                pass
        except OSError:
            pass  # full
        finally:
            os.close(fd)

    def outcome(call):
        try:
            call()
        except StoreError as exc:
            return [exc.problem, exc.remedy]
        return "ok"
    """
)


def on_a_small_disk(mount_at: Path, size: str, script: str, *args: str) -> dict:
    """Run `script` in a child that sees a `size` tmpfs at `mount_at`. Skipped where mounting is not allowed."""
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        pytest.skip("a private tmpfs needs Linux and unshare(1)")
    mount_at.mkdir(parents=True, exist_ok=True)
    shell = 'mount -t tmpfs -o size="$1" tmpfs "$2" || exit 77; shift 2; exec "$@"'
    package = os.path.dirname(os.path.dirname(wanx_nb.__file__))
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", shell, "sh", size, str(mount_at),
         sys.executable, "-c", SMALL_DISK_PREAMBLE + textwrap.dedent(script), package, os.path.dirname(__file__), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if out.returncode == 77 or "unshare failed" in out.stderr:
        pytest.skip(f"cannot mount a private tmpfs here (needs root): {out.stderr.strip()}")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def random_png(side=400) -> bytes:
    """A PNG that does not compress (~side*side*3 bytes): larger than the small disks below."""
    buf = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buf, format="PNG")
    return buf.getvalue()


SAVE_ON_A_FULL_DISK = """
    from test_journal import image
    store, images = Store(sys.argv[3]), os.path.join(sys.argv[3], "images")
    big = image(0)
    with open(sys.argv[5], "rb") as fh:
        big.data = fh.read()
    saved = outcome(lambda: store.save_image(sys.argv[4], big))
    left = sorted(os.listdir(images))
    fill(images)
    checked = outcome(store.check)
    print(json.dumps({"save": saved, "left": left, "check": checked}))
"""


def test_an_images_disk_that_fills_up_says_disk_full_and_the_image_saves_once_there_is_room(tmp_path):
    store = Store(tmp_path / "store")
    entry = sent_entry(store)
    store.set_billed(entry.entry_id, 1)
    served = tmp_path / "served.png"
    served.write_bytes(random_png())
    images = tmp_path / "store" / "images"
    seen = on_a_small_disk(images, "64k", SAVE_ON_A_FULL_DISK, str(tmp_path / "store"), entry.entry_id, str(served))
    problem, remedy = seen["save"]
    assert re.fullmatch(rf"could not write {re.escape(str(images))}/[0-9a-f]{{64}}\.png \(disk full\)", problem), problem
    assert remedy == ("free some space, then run `wanx-nb resume` (or %wanx resume) within 24 h: the task is kept and"
                      " its images are fetched again")  # fmt: skip
    assert seen["left"] == []  # no temp file, no partial image
    # Before a paid run, a full images disk is refused: nothing is sent.
    assert seen["check"] == [f"cannot write in {images} (No space left on device)",
                             "make it writable or use another store (Session(store=...) or WANX_NB_STORE); nothing was sent"]
    (kept,) = store.unfinished(now=T0)
    assert (kept.state, kept.billed_images, kept.saved_images) == (EntryState.COLLECTING, 1, 0)
    store.check()  # the space is back (the small disk went with the child)
    again = image(0)
    again.data = served.read_bytes()
    path = store.save_image(entry.entry_id, again)
    assert store.entry(entry.entry_id).saved_images == 1 and store.read_image(path) is not None


def test_a_rebuild_on_a_full_disk_says_the_disk_is_full(tmp_path):
    script = """
        root = sys.argv[3]
        os.makedirs(os.path.join(root, "images"))
        fill(root)
        failed = outcome(Store(root).rebuild)
        print(json.dumps({"rebuild": failed, "left": sorted(n for n in os.listdir(root) if n.startswith("index"))}))
    """
    seen = on_a_small_disk(tmp_path / "store", "64k", script, str(tmp_path / "store"))
    assert seen["rebuild"] == [
        "could not write the new index (database or disk is full): is the disk full?",
        "free some space, then run `wanx-nb store rebuild` again; the old index is as it was",
    ]  # fmt: skip
    assert seen["left"] == []  # the half-built index is not left taking the space
    report = Store(tmp_path / "store").rebuild()  # with room (the small disk went with the child), it works
    assert (report.entries, report.images, report.moved_aside) == (0, 0, None)


# ---- bad files ----------------------------------------------------------------------------------


def test_no_stored_file_however_bad_breaks_history_get_manifest_or_replay(tmp_path):
    store, made, _ = saved_store(tmp_path)
    paths = [im.path for im in store.get("task-0").images] + [im.path for im in store.get("task-1").images]
    with open(paths[0], "wb") as fh:
        fh.write(b"<html><body>AccessDenied</body></html>")
    data = Path(paths[1]).read_bytes()
    with open(paths[2], "wb") as fh:
        fh.write(data[: len(data) // 2])
    with open(paths[3], "wb") as fh:
        fh.write(bomb_png())
    assert len(store.history()) == 2
    for task_id in ("task-0", "task-1"):
        result = store.get(task_id)
        bad = [im for im in result.images if im.data is None]
        assert all(im.code == "StoredFileCorrupt" and im.path is None and not im.ok for im in bad)
    assert [im.data is None for im in store.get("task-1").images] == [True, True]
    assert "over the 40,000,000-pixel limit" in store.get("task-1").images[1].message
    manifest = store.manifest()
    assert [len(g["images"]) for g in manifest["generations"]] == [2, 2]
    assert store.replay(made[0].given).images[1].data is not None
    assert store.read_image(paths[3]) is None and store.read_image(paths[1]) is not None
    report = store.integrity()
    assert sorted(report.corrupt_images) == sorted([paths[0], paths[2], paths[3]]) and not report.ok


def test_integrity_reports_missing_and_unindexed_files(tmp_path):
    store, _, _ = saved_store(tmp_path, entries=1)
    (gone, _kept) = [im.path for im in store.get("task-0").images]
    os.unlink(gone)
    stray = tmp_path / "store" / "images" / "stray.png"
    stray.write_bytes(png())
    report = store.integrity()
    assert (report.quick_check, report.entries, report.missing_images, report.unindexed_files) == (
        "ok", 1, [gone], [str(stray)])
    assert store.get("task-0").images[0].code == "StoredFileMissing"


def test_png_checks_read_headers_without_decoding():
    good = png()
    assert png_dimensions(good) == (32, 24) and check_png(good) == (32, 24)
    assert png_dimensions(bomb_png()) == (20000, 20000)
    with pytest.raises(ValueError, match="pixel limit"):
        check_png(bomb_png())
    flipped = bytearray(good)
    flipped[-20] ^= 0xFF
    for bad, why in ((good[:-12], "no IEND"), (bytes(flipped), "CRC"), (b"<html>", "not a PNG")):
        with pytest.raises(ValueError, match=why):
            check_png(bad)


def test_provenance_is_read_from_the_head_of_the_file(tmp_path):
    from wanx_nb._png import add_provenance

    path = tmp_path / "a.png"
    path.write_bytes(add_provenance(png(), {"entry_id": "e", "note": "x" * 100_000}))
    assert read_file_provenance(str(path))["entry_id"] == "e"  # a chunk longer than the first read
    path.write_bytes(png())
    assert read_file_provenance(str(path)) is None


# ---- the command line -----------------------------------------------------------------------------


def test_cli_store_check_and_rebuild(tmp_path, capsys):
    store, _, _ = saved_store(tmp_path)
    store.close()
    root = str(tmp_path / "store")
    assert main(["store", "check", root]) == 0
    assert "index: ok; 2 entries, 4 images" in capsys.readouterr().out
    (tmp_path / "store" / "index.sqlite").write_bytes(b"garbage" * 1000)
    assert main(["store", "check", root]) == 1
    out = capsys.readouterr()
    assert "wanx-nb store rebuild" in out.out + out.err and "Traceback" not in out.err
    assert main(["store", "rebuild", root]) == 0
    assert "rebuilt the index: 2 entries, 4 images" in capsys.readouterr().out
    assert main(["--store", root, "store", "check"]) == 0


@pytest.mark.parametrize("action", ["check", "rebuild"])
def test_cli_store_check_of_a_path_with_no_store_says_so_and_makes_nothing(tmp_path, capsys, action):
    typo = tmp_path / "wanx_stroe"
    assert main(["store", action, str(typo)]) == 1
    out = capsys.readouterr()
    assert f"no store at '{typo}'" in out.err and "Traceback" not in out.err
    assert not typo.exists()


V1_SCHEMA = """
CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY, replay_key TEXT NOT NULL, request_key TEXT NOT NULL, model TEXT NOT NULL,
    prompt TEXT NOT NULL, request_json TEXT NOT NULL, given_json TEXT NOT NULL, backend TEXT NOT NULL,
    mode TEXT NOT NULL, status TEXT NOT NULL, code TEXT, message TEXT, request_id TEXT, submitted_at TEXT NOT NULL,
    finished_at TEXT, cost_yuan REAL NOT NULL DEFAULT 0, image_count INTEGER NOT NULL DEFAULT 0, result_json TEXT
);
CREATE INDEX tasks_replay ON tasks(replay_key, submitted_at);
CREATE TABLE images (
    task_id TEXT NOT NULL, idx INTEGER NOT NULL, sha256 TEXT, path TEXT, seed INTEGER, size TEXT, url TEXT,
    orig_prompt TEXT, actual_prompt TEXT, code TEXT, message TEXT, PRIMARY KEY (task_id, idx)
);
"""


def test_rebuild_lists_files_it_cannot_make_sense_of_and_recovers_the_rest(tmp_path):
    from wanx_nb._png import add_provenance

    store, made, served = saved_store(tmp_path)
    odd = tmp_path / "store" / "images" / "odd.png"
    odd.write_bytes(add_provenance(png((9, 9, 9)), {"entry_id": "x" * 32, "index": 0, "sent": {"prompt": "p", "model": "no-such-model"}}))
    plain = tmp_path / "store" / "images" / "plain.png"
    plain.write_bytes(png((8, 8, 8)))
    report = store.rebuild()
    assert sorted(report.unreadable) == sorted([str(odd), str(plain)])
    assert [im.data for im in store.get("task-1").images] == served[made[1].entry_id]


def test_an_index_rebuilt_by_another_process_keeps_this_sessions_in_flight_entry(tmp_path):
    store, _, _ = saved_store(tmp_path, entries=1)
    live = sent_entry(store, task_id="in-flight")
    Store(tmp_path / "store").rebuild()  # elsewhere: the index file is replaced under our open connection
    store.update_status(live.entry_id, "RUNNING")
    assert store.entry(live.entry_id).status == "RUNNING"
    assert [e.task_id for e in Store(tmp_path / "store").unfinished(now=T0)] == ["in-flight"]


def test_history_still_lists_rows_of_a_model_no_longer_in_the_registry(tmp_path):
    store, _, _ = saved_store(tmp_path, entries=1)
    with store._write() as db:  # a store written by a version that knew this model
        db.execute("UPDATE entries SET model='wanx-retired'")
    (row,) = store.history()
    assert (row.model, row.prompt, row.saved, row.size) == ("wanx-retired", "fox 0", 2, "")  # size unknown: blank


def test_a_journal_write_on_a_full_disk_says_so_and_names_resume_and_rebuild(tmp_path):
    script = """
        from test_journal import new_entry
        store = Store(sys.argv[3])
        store.record(new_entry("first"))  # the index exists, with room to spare
        fill(sys.argv[3])
        print(json.dumps({"record": outcome(lambda: [store.record(new_entry(f"more {i}")) for i in range(200)])}))
    """
    seen = on_a_small_disk(tmp_path / "store", "256k", script, str(tmp_path / "store"))
    assert seen["record"] == [
        "could not write the index (database or disk is full): is the disk full?",
        "free some space, then run `%wanx resume` (or `wanx-nb resume`); if the index then reads as damaged,"
        " `wanx-nb store rebuild` restores it from the images",
    ]  # fmt: skip
    store = Store(tmp_path / "store")  # the same in this process, with room: the write goes through
    entry = new_entry("with room")
    store.record(entry)
    assert store.entry(entry.entry_id).given.prompt == "with room"


def test_a_rebuild_of_a_read_only_store_says_so_and_leaves_it_as_it_was(tmp_path):
    script = """
        import subprocess
        root = sys.argv[3]
        made = Store(root)
        made.history()  # the index made while the disk is writable
        made.close()
        subprocess.run(["mount", "-o", "remount,ro", root], check=True)
        print(json.dumps({"rebuild": outcome(Store(root).rebuild), "left": sorted(os.listdir(root))}))
    """
    root = tmp_path / "store"
    seen = on_a_small_disk(root, "1m", script, str(root))
    assert seen["rebuild"] == [
        "cannot rebuild the index (Read-only file system)", "make the store directory writable and run the rebuild again"
    ]
    assert "index.sqlite" in seen["left"] and not [n for n in seen["left"] if "rebuild" in n or "damaged" in n]
    assert Store(root).rebuild().moved_aside is None  # writable again: the rebuild goes through
