"""Reading results back (`_store_queries`): history's filters and pages, replay's order and the errors it
gives back, the recorded rewritten prompt, and the bill since a time."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace

from wanx_nb._exceptions import TaskFailedError, TaskUnknownError
from wanx_nb._journal import EntryState
from wanx_nb._request import GenerationRequest
from wanx_nb._session import Session
from wanx_nb._store import Store
from wanx_nb.emulator import Emulator, EmulatorSettings, Fault

from test_journal import T0, image, new_entry, sent_entry


def recorded(store, prompt, *, at=T0, **kwargs):
    entry = new_entry(prompt, at=at, **kwargs)
    store.record(entry)
    return entry


def test_history_pages_fifty_rows_by_default_and_all_on_request(tmp_path):
    store = Store(tmp_path)
    for k in range(51):
        recorded(store, f"fox {k}", at=T0 + dt.timedelta(seconds=k))
    assert len(store.history()) == 50 and store.history()[0].prompt == "fox 50"
    assert len(store.history(limit=None)) == 51 == store.history_count()
    assert [r.prompt for r in store.history(limit=2, offset=49)] == ["fox 1", "fox 0"]


def test_reading_a_store_that_does_not_exist_finds_nothing_and_does_not_create_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nor any file in the working directory
    store = Store(tmp_path / "typo")
    request = GenerationRequest("a fox", seed=1)
    assert store.history() == [] and store.history_count() == 0 and store.total_cost() == (0, 0.0)
    assert store.reusable(request, "emulator") is None and store.unfinished_send(request, "emulator") is None
    assert store.get("task-1") is None and store.manifest()["generations"] == []
    assert os.listdir(tmp_path) == []
    recorded(store, "a fox")  # the first write creates it
    assert [r.prompt for r in store.history()] == ["a fox"] and (tmp_path / "typo" / "index.sqlite").is_file()


def test_history_text_search_takes_wildcards_and_backslashes_literally(tmp_path):
    store = Store(tmp_path)
    for prompt in ("a 50% grey fox", "a 500 grey fox", "snake_case fox", "snakeXcase fox", "back\\slash fox",
                   "backslash fox"):  # fmt: skip
        recorded(store, prompt)
    for text, found in (("50%", ["a 50% grey fox"]), ("snake_case", ["snake_case fox"]),
                        ("back\\slash", ["back\\slash fox"])):  # fmt: skip
        assert [r.prompt for r in store.history(text=text)] == found, text
        assert store.history_count(text=text) == 1, text


def test_history_filters_combine_and_time_bounds_are_inclusive(tmp_path):
    store = Store(tmp_path)
    times = [T0 + dt.timedelta(hours=h) for h in range(4)]
    made = [recorded(store, f"fox {h}", at=at, model="wanx2.1-t2i-plus" if h % 2 else "wanx2.1-t2i-turbo")
            for h, at in enumerate(times)]  # fmt: skip
    finished = made[1]
    store.mark_sending(finished.entry_id, finished.given.replace(seed=1), times[1].isoformat())
    store.attach_task(finished.entry_id, "task-1", status="PENDING", request_id=None)
    store.set_billed(finished.entry_id, 1)
    store.save_image(finished.entry_id, image(0))
    store.finish(finished.entry_id, EntryState.DONE, status="SUCCEEDED")
    def prompts(**f):
        listed = sorted(r.prompt for r in store.history(**f))
        assert store.history_count(**f) == len(listed), f  # what %wanx history --page counts pages by
        return listed

    assert prompts(since=times[1], until=times[2]) == ["fox 1", "fox 2"]
    assert prompts(until=times[0]) == ["fox 0"]
    assert prompts(model="wanx2.1-t2i-plus", since=times[2]) == ["fox 3"]
    assert prompts(status="succeeded") == ["fox 1"]  # the service's status, in any case
    assert prompts(status="queued", model="wanx2.1-t2i-turbo") == ["fox 0", "fox 2"]  # or the journal's state
    assert prompts(text="fox", status="SUCCEEDED", since=times[1]) == ["fox 1"]


def test_replay_gives_the_oldest_outcome_first_and_the_last_one_past_the_end(tmp_path):
    store = Store(tmp_path)
    request = GenerationRequest("a red fox", n=2)
    for k in range(2):
        entry = sent_entry(store, task_id=f"task-{k}", at=T0 + dt.timedelta(minutes=k))
        store.set_billed(entry.entry_id, 1)
        store.save_image(entry.entry_id, image(0, color=(k, 1, 1)))
        store.finish(entry.entry_id, EntryState.DONE, status="SUCCEEDED", result=store.journal_record(entry.entry_id))
    assert store.replay(request).task_id == "task-0"
    assert store.replay(request, nth=1).task_id == "task-1"
    assert store.replay(request, nth=5).task_id == "task-1"


def test_replay_of_a_task_that_ended_without_images_raises_what_it_raised(tmp_path):
    store = Store(tmp_path)
    failed = sent_entry(store, task_id="task-f", prompt="a failed fox")
    store.finish(failed.entry_id, EntryState.FAILED, status="FAILED", code="InternalError", message="boom")
    error = store.replay(GenerationRequest("a failed fox", n=2))
    assert isinstance(error, TaskFailedError)
    assert (error.task_id, error.task_status, error.code, error.server_message, error.request_id) == (
        "task-f", "FAILED", "InternalError", "boom", "req-1")
    # Sent, never answered, and past the service's 24 h: no task id, no status, no message.
    lost = recorded(store, "a lost fox")
    store.mark_sending(lost.entry_id, lost.given.replace(seed=3), T0.isoformat())
    store.finish(lost.entry_id, EntryState.GONE)
    error = store.replay(GenerationRequest("a lost fox", n=2))
    assert isinstance(error, TaskFailedError) and not isinstance(error, TaskUnknownError)
    assert (error.task_id, error.task_status, error.code, error.server_message) == ("(no task)", "GONE", None, "")


def test_the_recorded_rewritten_prompt_is_none_for_a_request_never_run(tmp_path):
    store = Store(tmp_path)
    assert store.recorded_actual_prompt(GenerationRequest("never run")) is None


def test_total_cost_counts_what_was_billed_since_a_time_to_four_places(tmp_path):
    store = Store(tmp_path)
    for k, price in enumerate((0.14, 0.12345)):
        entry = replace(new_entry(f"fox {k}", at=T0 + dt.timedelta(hours=k)), price_yuan=price)
        store.record(entry)
        store.set_billed(entry.entry_id, 1)
    assert store.total_cost() == (2, round(0.14 + 0.12345, 4))
    assert store.total_cost(since=T0 + dt.timedelta(hours=1)) == (1, 0.1235)
    assert store.total_cost(since=T0 + dt.timedelta(hours=2)) == (0, 0.0)


def test_the_result_record_is_none_for_an_unknown_entry_and_for_one_never_finished(tmp_path):
    # Resume asks for it on every unfinished sync call: no record must mean None, never an error.
    store = Store(tmp_path / "store")
    assert store.result_record("no-such-entry") is None
    entry = recorded(store, "a red fox")
    assert store.result_record(entry.entry_id) is None


# ---- reuse: what a grid run again shows instead of paying ------------------------------------------


def test_reusable_is_the_newest_result_whose_every_billed_image_is_saved_and_sound_by_the_same_service(tmp_path):
    session = Session(store=tmp_path / "store", emulator=Emulator(EmulatorSettings(time_scale=0.001)))
    request = GenerationRequest("a fox", model="wanx2.1-t2i-turbo", n=2, seed=9)
    session.generate(request)
    newest = session.generate(request)
    store = session.store
    found = store.reusable(request, session.service)
    assert found.task_id == newest.task_id and found.saved_images == 2
    assert all(im.path and not im.missing for im in found.images)
    # Another service's result (the emulator's placeholders, once a key is set) never stands in.
    assert store.reusable(request, "dashscope.aliyuncs.com") is None
    assert store.reusable(request.replace(seed=10), session.service) is None
    # A stored file damaged since is not saved any more (both results' second image: the store keeps
    # one file per content): the request must be made again.
    with open(newest.images[1].path, "r+b") as fh:
        fh.seek(60)
        fh.write(b"garbage")
    assert store.reusable(request, session.service) is None


def test_a_result_with_a_billed_image_not_saved_is_not_reusable_until_resume_saves_it(tmp_path):
    emulator = Emulator(EmulatorSettings(time_scale=0.001))
    session = Session(store=tmp_path / "store", emulator=emulator)
    emulator.script("image", Fault.body(b"<html>busy</html>"))  # not an image: not tried again
    request = GenerationRequest("a fox", model="wanx2.1-t2i-turbo", n=2, seed=11)
    made = session.generate(request)
    assert (made.billed_images, made.saved_images) == (2, 1)
    assert session.store.reusable(request, session.service) is None
    session.resume()
    assert session.store.reusable(request, session.service).saved_images == 2


def test_an_unfinished_send_counts_for_reuse_while_the_service_keeps_its_task(tmp_path):
    # Within the service's 24 h the task may still hold billed images: reuse must not pay again.
    # Past them nothing can be fetched, so the request is free to be made again.
    store = Store(tmp_path / "store")
    now = dt.datetime.now(dt.timezone.utc)
    young = sent_entry(store, task_id="young", at=now - dt.timedelta(hours=23, minutes=50), prompt="young fox")
    old = sent_entry(store, task_id="old", at=now - dt.timedelta(hours=24, minutes=30), prompt="old fox")
    found = store.unfinished_send(young.given, "emulator")
    assert found is not None and found.task_id == "young"
    assert store.unfinished_send(young.given, "elsewhere") is None  # another service's task is not this one
    assert store.unfinished_send(old.given, "emulator") is None
    store.finish(young.entry_id, EntryState.FAILED, status="FAILED")
    assert store.unfinished_send(young.given, "emulator") is None
