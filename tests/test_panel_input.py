"""The panel against a demanding user: bad values in every field, clicks at the wrong moment, faults
after a create was sent. Driven without a browser, as in test_panel.py: set `.value`, `click()`, assert
on widget state and on the emulator's request log (what was sent, and so what could be billed)."""

import asyncio
import html
import re
import threading
import time

import pytest

from wanx_nb._exceptions import ReuseUnfinishedError, TaskUnfinishedError
from wanx_nb._models import GenerationResult
from wanx_nb._request import GenerationRequest
from wanx_nb._session import Session
from wanx_nb.emulator import Emulator, EmulatorSettings, Fault
from wanx_nb.panel import Panel


def wait_until(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def text(widget) -> str:
    """A widget's HTML as the user reads it: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", widget.value)).split())


def walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def assert_refused(panel, emulator, *needles):
    """Refused before anything was sent, said in the panel (every needle), and the panel is ready again."""
    shown = text(panel._errors)
    assert shown.startswith("Not sent") and all(n in shown for n in needles), shown
    assert "Traceback" not in shown and emulator.request_log == []
    assert not panel.running and not panel._generate.disabled and panel._cancel.disabled


# ---- bad input: refused in the panel, naming the field, the value and the rule ---------------------------


def _set(**values):
    def apply(panel):
        for name, value in values.items():
            setattr(getattr(panel, f"_{name}"), "value", value)
    return apply


BAD_INPUT = {
    "blank prompt": (_set(prompt=" \n\t "), ["prompt=''", "a non-empty text"]),
    "prompt not UTF-8": (_set(prompt="a \udcff fox"), ["prompt=", "character 3", "not UTF-8"]),
    "negative prompt not UTF-8": (_set(negative="blur \ud800"), ["negative_prompt=", "character 6"]),
    "seed + n past the largest seed": (
        _set(seed_fixed=True, n=4, seed=2147483647), ["seed=2147483647", "at most 2147483644"]),
    "size outside the area rule": (
        _set(model="wan2.5-t2i-preview", width=2880, height=2880), ["size='2880*2880'", "between 589824 and 2073600"]),
    "sweep seed not a number": (_set(sweep_seeds="1, two"), ["Sweep seeds='two'", "a whole number"]),
    "sweep seed out of range": (_set(sweep_seeds="-5, 3"), ["Sweep seeds='-5'", "seeds from 0 to 2147483647"]),
    "sweep seed past the largest with n": (
        _set(n=2, sweep_seeds="2147483647"), ["Sweep seeds='2147483647'", "seeds from 0 to 2147483646"]),
    "sweep style unknown": (_set(model="wanx-v1", sweep_styles="anime, oil"), ["Sweep styles='oil'", "one of <auto>"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_refused_before_sending_naming_field_value_and_rule(session, emulator, case):
    setup, needles = BAD_INPUT[case]
    panel = Panel(session=session, prompt="a fox")
    setup(panel)
    panel._generate.click()
    assert_refused(panel, emulator, *needles)
    assert panel.results == () and panel.code_text == ""


def test_a_huge_prompt_is_sent_with_a_warning_that_the_server_cuts_it(session, emulator):
    panel = Panel(session=session, prompt="fox " * 400)
    panel._sweep_seeds.value = "1"  # a sweep's plan no longer hides the warning
    panel._generate.click()
    panel.wait(30)
    assert "prompt is 1599 characters; wanx2.1-t2i-turbo keeps the first 800" in text(panel._message)
    assert "Sweep: 1 = 1 cell" in text(panel._message) and len(emulator.requests("create")) == 1


def test_a_style_sweep_is_offered_only_for_a_model_that_takes_a_style(session, emulator):
    panel = Panel(session=session, model="wanx-v1", prompt="a fox")
    panel._sweep_styles.value = "anime, sketch"
    assert panel._sweep_styles.layout.display != "none"
    panel._model.value = "wanx2.1-t2i-turbo"  # no style: the field goes, and what it held is not a sweep
    assert panel._sweep_styles.layout.display == "none"
    panel._generate.click()
    (result,) = panel.wait(30)
    assert "Sweep" not in text(panel._message) and result.request.style is None
    assert len(emulator.requests("create")) == 1


# ---- the cost label says what a click will be billed ------------------------------------------------------


def test_the_cost_label_counts_every_request_of_a_sweep(session, emulator):
    panel = Panel(session=session, prompt="a lighthouse")
    panel._n.value = 2
    panel._sweep_seeds.value = "1..3"
    assert panel._cost.value.startswith("3 sweep requests x 2 images x ¥0.14 = ¥0.84")
    panel._sweep_seeds.value = "1..3, x"
    assert "fix Sweep seeds" in panel._cost.value
    panel._sweep_seeds.value = "1..3"
    panel._generate.click()
    assert "estimated ¥0.84" in text(panel._message)  # the plan agrees with the label
    assert len(panel.wait(30)) == 3 and "Done: 6 images, ¥0.84" in text(panel._message)


def test_the_cost_label_uses_the_price_with_prompt_rewriting_as_billed(session):
    panel = Panel(session=session, model="z-image-turbo", prompt="a kite")
    labels = dict((v, k) for k, v in panel._model.options)
    assert "¥0.10/image (¥0.20 rewriting the prompt)" in labels["z-image-turbo"]
    assert panel._extend.value and panel._cost.value.startswith("1 image x ¥0.20 = ¥0.20")
    panel._generate.click()
    (result,) = panel.wait(30)
    assert result.cost_yuan == pytest.approx(0.20) and "Done: 1 image, ¥0.20" in text(panel._message)
    panel._extend.value = False
    assert panel._cost.value.startswith("1 image x ¥0.10 = ¥0.10")


# ---- a request sent and not finished: say so, offer Resume, never send it again -----------------------------


def lose_the_poll(emulator):
    emulator.script("query", Fault.status(400, code="InvalidParameter"))  # the service refuses one poll


def lose_the_create_answer(emulator):
    emulator.script("create", Fault.drop_after())  # the task is created, its answer lost
    emulator.script("list", Fault.status(400, code="InvalidParameter"))  # and the task list cannot settle it now


@pytest.mark.parametrize("fault", [lose_the_poll, lose_the_create_answer])
def test_a_request_left_unfinished_is_resumed_and_never_paid_twice(session, emulator, fault):
    panel = Panel(session=session, prompt="a fox in snow")
    fault(emulator)
    panel._generate.click()
    assert panel.wait(30) == []
    assert isinstance(panel.last_error, TaskUnfinishedError)
    assert "not finished (may be billed)" in text(panel._errors) and " failed" not in text(panel._errors)
    said = text(panel._message)
    assert "1 request sent and not finished: it may be billed" in said and "Click Resume" in said
    assert not panel._generate.disabled and not panel._resume.disabled

    panel._generate.click()  # the plain retry: refused, it could be the second billed task
    assert isinstance(panel.last_error, ReuseUnfinishedError) and "Click Resume" in text(panel._message)
    assert text(panel._errors).startswith("Not sent") and len(emulator.requests("create")) == 1
    assert not panel.running and not panel._generate.disabled

    panel._resume.click()
    (recovered,) = panel.wait(30)
    assert recovered.saved_images == 1 and panel.results == (recovered,)
    assert "Resume: recovered 1 task(s), 1 image(s) saved" in text(panel._message)
    assert len(emulator.requests("create")) == 1 and "<img " in panel._out.outputs[0]["data"]["text/html"]
    panel._generate.click()  # settled: the same request may be sent again (a new image, paid again)
    assert len(panel.wait(30)) == 1 and len(emulator.requests("create")) == 2


def test_a_billed_image_whose_download_failed_is_not_counted_as_made_and_is_resumed(session, emulator):
    emulator.script("image", Fault.body(b"<html>busy</html>"))  # not an image: not tried again
    panel = Panel(session=session, prompt="a fox")
    panel._generate.click()
    (result,) = panel.wait(30)
    assert result.billed_images == 1 and result.saved_images == 0
    said = text(panel._message)
    assert "Done: 0 images, ¥0.14 billed so far" in said and "images are not saved yet. Click Resume" in said
    panel._resume.click()
    (recovered,) = panel.wait(30)
    assert recovered.saved_images == 1 and len(emulator.requests("create")) == 1
    assert "recovered 1 task(s), 1 image(s) saved" in text(panel._message)
    panel._resume.click()
    assert panel.wait(30) == [] and "nothing to resume" in text(panel._message)


def test_a_sync_call_whose_answer_was_lost_is_not_shown_as_free_and_says_to_check_the_bill(session, emulator):
    emulator.script("generate", Fault.drop_after())  # qwen-image-max is sync only: no task to look up
    panel = Panel(session=session, prompt="a kite", model="qwen-image-max")
    panel._generate.click()
    assert panel.wait(30) == []
    said = text(panel._message)
    assert "Done: 0 images, ¥0.00 billed so far" in said, said
    assert "1 call sent with no answer: it may be billed" in said and "Check the bill" in said
    assert "Click Resume" not in said  # resume cannot settle it: no promise that it will
    assert "no answer" in text(panel._status) and "unfinished" not in text(panel._status)


def test_another_cells_run_of_the_same_request_still_going_does_not_block_generate(tmp_path):
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=0.001, pending_seconds=1e9, query_qps=None))
    session = Session(store=tmp_path / "store", emulator=emulator)
    other = session.start([GenerationRequest("a fox", n=1)])  # no seed: each send draws a new image
    wait_until(lambda: emulator.requests("create"), "the other cell's create")
    panel = Panel(session=session, prompt="a fox")
    panel._generate.click()
    wait_until(lambda: len(emulator.requests("create")) == 2, "the panel's create")
    assert panel.last_error is None
    panel._cancel.click()
    other.cancel()
    panel.wait(20)
    other.result(timeout=20)


# ---- Cancel, close ---------------------------------------------------------------------------------------


def test_cancel_while_the_create_is_on_the_wire_cancels_the_task_it_makes(tmp_path):
    gate = threading.Event()

    async def held(seconds):  # the create waits at the service until the test lets it through
        while not gate.is_set():
            await asyncio.sleep(0.002)

    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=0.001, pending_seconds=1e9, query_qps=None),
                        sleep=held)  # fmt: skip
    emulator.script("create", Fault.delay(1.0))
    panel = Panel(session=Session(store=tmp_path / "store", emulator=emulator), prompt="a fox")
    panel._generate.click()
    wait_until(lambda: "sending" in panel._status.value, "the create on the wire")
    panel._cancel.click()
    assert "Canceling" in text(panel._message)
    gate.set()  # the create arrives: its task is PENDING, and the panel cancels it
    assert panel.wait(10) == []
    (task_id,) = emulator.tasks
    assert emulator.tasks[task_id].status_at(emulator.now()) == "CANCELED"
    assert f"Canceled, not billed: {task_id}." in text(panel._message) and "canceled" in panel._status.value
    assert not panel._generate.disabled and panel._cancel.disabled


def test_closing_the_panel_mid_run_lets_the_run_finish_and_save(tmp_path):
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=0.001, query_qps=None))
    session = Session(store=tmp_path / "store", emulator=emulator)
    panel = Panel(session=session, prompt="a fox")
    panel._generate.click()
    wait_until(lambda: "pending" in panel._status.value, "the pending status")
    panel.close()
    emulator.advance(3600)
    (result,) = panel.wait(20)
    assert result.saved_images == 1 and not panel.running and session.store.unfinished() == []


# ---- the API key ---------------------------------------------------------------------------------------


def test_the_api_key_appears_nowhere_in_the_panel(tmp_path, monkeypatch):
    key = "sk-" + "canary" + "9d2e" * 5  # built at run time, shaped like a key, never a real one
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    emulator = Emulator(EmulatorSettings(time_scale=0.001, invalid_keys={key}))
    panel = Panel(session=Session(store=tmp_path / "store", emulator=emulator, api_key=key), prompt="a fox")
    panel._generate.click()
    assert panel.wait(30) == [] and "InvalidApiKey" in text(panel._errors)
    shown = [repr(panel), str(panel.last_error), repr(panel.last_error), panel.code_text, str(panel._out.outputs)]
    for widget in walk(panel):
        shown += [str(getattr(widget, name, "")) for name in ("value", "description", "tooltip", "placeholder")]
    assert all(key not in s and key[3:] not in s for s in shown)


def test_a_request_the_session_refuses_leaves_no_queued_row_behind(tmp_path, emulator):
    session = Session(store=tmp_path / "store", emulator=emulator, mode="replay")
    panel = Panel(session=session, prompt="a fox")
    panel._generate.click()  # nothing recorded: the replay refuses it, nothing is sent
    assert text(panel._errors).startswith("Not sent ReplayMissError") and emulator.request_log == []
    assert panel._status.value == "" and not panel.running and not panel._generate.disabled


def test_wait_after_a_refused_click_returns_nothing_not_the_previous_results(session, emulator):
    panel = Panel(session=session, prompt="a fox")
    panel.generate()
    assert len(panel.wait(30)) == 1
    panel._prompt.value = ""
    panel.generate()  # refused: a script that waits must not take the last click's images for this one's
    assert panel.wait(1) == [] and len(emulator.requests("create")) == 1


@pytest.mark.parametrize("tick", [0, -1.0, float("nan")])
def test_a_tick_that_would_spin_the_status_thread_is_refused(session, tick):
    with pytest.raises(ValueError, match=r"tick_seconds=.*in seconds above 0"):
        Panel(session=session, tick_seconds=tick)
