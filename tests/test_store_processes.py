"""Two OS processes sharing one store never overwrite each other's records."""

import json
import os
import subprocess
import sys
import textwrap

from test_journal import png

from wanx_nb._store import Store

ROUNDS = 25
CONTESTED_EVERY = 5

WRITER = textwrap.dedent(
    """
    import json, os, sys, time
    sys.path.insert(0, sys.argv[3])
    from test_journal import image, new_entry, png
    from wanx_nb._exceptions import StoreError
    from wanx_nb._journal import EntryState
    from wanx_nb._store import Store

    root, name, rounds, every = sys.argv[1], sys.argv[2], int(sys.argv[4]), int(sys.argv[5])
    store = Store(root)
    store.check()
    open(os.path.join(root, f"ready-{name}"), "w").close()
    while not all(os.path.exists(os.path.join(root, f"ready-{p}")) for p in "ab"):
        time.sleep(0.01)
    lost = []
    for i in range(rounds):
        entry = new_entry(f"{name} {i}", service=f"host-{name}", run_id=name)
        store.record(entry)
        store.mark_sending(entry.entry_id, entry.given.replace(seed=i), entry.created_at)
        store.attach_task(entry.entry_id, f"task-{i}", status="PENDING", request_id=None)  # same ids, two services
        store.set_billed(entry.entry_id, 1)
        im = image(0)
        im.data = png((ord(name), i, 7))
        store.save_image(entry.entry_id, im)
        store.finish(entry.entry_id, EntryState.DONE, status="SUCCEEDED", result=store.journal_record(entry.entry_id))
        if i % every == 0:  # both processes claim one task on one service: exactly one may hold it
            claim = new_entry(f"claim {name} {i}", service="shared", run_id=name)
            store.record(claim)
            try:
                store.attach_task(claim.entry_id, f"contested-{i}", status="PENDING", request_id=None)
            except StoreError:
                lost.append(i)
    print(json.dumps({"lost": lost}))
    """
)


def test_two_processes_interleave_entries_and_images_without_overwriting(tmp_path):
    root = tmp_path / "shared-store"
    root.mkdir()
    tests_dir = os.path.dirname(__file__)
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(root), name, tests_dir, str(ROUNDS), str(CONTESTED_EVERY)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
        for name in "ab"
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    lost = [json.loads(out)["lost"] for out, _ in outputs]

    store = Store(root)
    for name in "ab":
        for i in range(ROUNDS):
            result = store.get(f"task-{i}", service=f"host-{name}")
            assert result.request.prompt == f"{name} {i}"
            assert [im.data for im in result.images] == [png((ord(name), i, 7))]
    contested = range(0, ROUNDS, CONTESTED_EVERY)
    assert sorted(lost[0] + lost[1]) == list(contested)  # each contested task: one winner, one clear refusal
    for i in contested:
        holder = store.find_task(f"contested-{i}", "shared")
        assert holder.run_id in "ab" and i not in lost["ab".index(holder.run_id)]
    rows = store.history(limit=None)
    assert len(rows) == 2 * ROUNDS + 2 * len(contested)
    assert sum(r.saved for r in rows) == 2 * ROUNDS
    assert store.total_cost() == (2 * ROUNDS, round(2 * ROUNDS * 0.14, 4))
    assert store.integrity().ok
