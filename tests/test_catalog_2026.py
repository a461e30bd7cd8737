"""The 2026 catalog behind one call: the right endpoint per model, the spec's bodies, sync calls in the
journal, per-minute limits, regions, and every surface (Run API, CLI, magic) over the emulator.

Request bodies are checked against the spec's Appendix A (transcribed in tests/emulator/doc_examples_2026.py).
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import pytest
from emulator.doc_examples_2026 import DOC_EXAMPLES
from fake_time import FakeTime

from wanx_nb import cli
from wanx_nb._catalog_2026 import CATALOG_2026
from wanx_nb._client import AsyncWanxClient
from wanx_nb._exceptions import (
    APIConnectionError,
    ConfigurationError,
    ReuseUnfinishedError,
    SyncOutcomeUnknownError,
    TaskUnfinishedError,
    ValidationError,
)
from wanx_nb._models import GenerationResult
from wanx_nb._protocol import build_create
from wanx_nb._protocol_image import build_image_create, parse_sync_result
from wanx_nb._registry import Protocol, get_model, preferred_protocol
from wanx_nb._request import GenerationRequest
from wanx_nb._scheduler import estimate_seconds
from wanx_nb._session import Session
from wanx_nb._store import EntryState
from wanx_nb.emulator import Emulator, EmulatorSettings, Fault

CATALOG_NAMES = [spec.name for spec in CATALOG_2026]
SYNC_ONLY = [name for name in CATALOG_NAMES if not preferred_protocol(get_model(name)).is_async]
ASYNC_HEADER = "x-dashscope-async"
# Fields of the docs' bodies that GenerationRequest does not carry (the server's default applies): none
# since wan2.7's thinking_mode became a request field.
NOT_REQUEST_FIELDS: set[str] = set()


def canary_key() -> str:
    return "sk-canary" + "0123456789abcdef"


def request_of(body: dict) -> GenerationRequest:
    """The GenerationRequest a user writes for one of the docs' bodies."""
    if "messages" in body["input"]:
        prompt = body["input"]["messages"][0]["content"][0]["text"]
    else:
        prompt = body["input"]["prompt"]
    fields = {k: v for k, v in body["parameters"].items() if k not in NOT_REQUEST_FIELDS}
    fields.update({k: v for k, v in body["input"].items() if k not in ("prompt", "messages")})
    return GenerationRequest(prompt, model=body["model"], **fields)


def without(body: dict, *names: str) -> dict:
    out = copy.deepcopy(body)
    for name in names:
        out["parameters"].pop(name, None)
    return out


# ---- the spec's bodies, field by field --------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in DOC_EXAMPLES if "legacy" not in n])
def test_messages_bodies_match_the_docs_examples_field_by_field(name):
    example = DOC_EXAMPLES[name]
    protocol = Protocol.IMG if example["async"] else Protocol.MMG
    assert example["path"] == "/api/v1" + protocol.path
    wire = build_image_create(request_of(example["body"]), protocol)
    expected = without(example["body"], *NOT_REQUEST_FIELDS)
    assert wire.json == expected
    assert wire.path == protocol.path
    assert ("X-DashScope-Async" in wire.headers) is example["async"]
    assert "Authorization" not in wire.headers  # added at send time only


def test_the_legacy_qwen_body_keeps_the_legacy_field_places():
    # 2026 §13.6: the table puts negative_prompt in input, the curl in parameters; the emulator (like the
    # legacy SDK) takes input, which is where the client sends it. Every other field is the docs'.
    example = DOC_EXAMPLES["A9_doc_qwen_image_plus_legacy_async"]
    wire = build_create(request_of({**example["body"], "parameters": without(example["body"], "negative_prompt")["parameters"]}))
    expected = without(example["body"], "negative_prompt")
    assert wire.json == expected
    assert wire.headers["X-DashScope-Async"] == "enable"


@pytest.mark.parametrize("name", [n for n in DOC_EXAMPLES if "legacy" not in n])
async def test_the_client_sends_each_docs_body_to_the_models_endpoint(name):
    example = DOC_EXAMPLES[name]
    emu = Emulator(EmulatorSettings(time_scale=0.001, rate_limits=False))
    request = request_of(example["body"])
    async with AsyncWanxClient(emulator=emu) as client:
        result = await client.generate(request)
    assert result.images and all(im.data for im in result.images)
    protocol = preferred_protocol(get_model(request.model))
    (sent,) = [r for r in emu.request_log if r.method == "POST"]
    assert sent.path == "/api/v1" + protocol.path
    assert (ASYNC_HEADER in {k.lower() for k in sent.headers}) is protocol.is_async
    # The client adds a seed when none is given (so every image's seed is known); the rest is the docs'.
    expected = without(example["body"], *NOT_REQUEST_FIELDS)
    if "seed" not in expected["parameters"]:
        assert isinstance(sent.json["parameters"].pop("seed"), int)
    assert sent.json == expected


# ---- answers -----------------------------------------------------------------------------------------


def test_a_sync_answer_becomes_a_result_without_a_task_id():
    body = {
        "output": {"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": [
            {"image": "https://x.example/a.png?Expires=1"}, {"text": "a rewritten prompt"}], "reasoning_content": ""}}]},
        "usage": {"width": 1024, "height": 1024, "image_count": 1},
        "request_id": "rid-1",
    }  # fmt: skip
    task = parse_sync_result(body)
    assert task.task_id is None and task.request_id == "rid-1" and task.image_count == 1
    assert task.results == ({"url": "https://x.example/a.png?Expires=1", "actual_prompt": "a rewritten prompt"},)


def test_a_business_error_in_a_200_is_the_servers_refusal():
    with pytest.raises(Exception, match="InvalidParameter: num_images_per_prompt must be 1") as info:
        parse_sync_result({"request_id": "r", "code": "InvalidParameter", "message": "num_images_per_prompt must be 1"})
    assert info.value.code == "InvalidParameter"


# ---- every added model, through the Run API, the CLI and the magic ------------------------------------


@pytest.mark.parametrize("model", CATALOG_NAMES)
def test_every_catalog_model_generates_through_the_run_api(session, emulator, model):
    result = session.generate(GenerationRequest("a lighthouse at dusk", model=model, n=1, seed=11))
    assert isinstance(result, GenerationResult)
    assert len(result.images) == 1 and result.images[0].path and Path(result.images[0].path).is_file()
    assert result.cost_yuan == get_model(model).price_yuan
    sync = model in SYNC_ONLY
    assert (result.task_id is None) is sync
    assert result.task.request_id
    assert session.store.unfinished() == []  # the entry is finished: DONE, every billed image saved
    sends = [r for r in emulator.request_log if r.method == "POST"]
    assert len(sends) == 1
    assert (ASYNC_HEADER in {k.lower() for k in sends[0].headers}) is not sync


@pytest.mark.parametrize("model", CATALOG_NAMES)
def test_every_catalog_model_generates_through_the_cli(cli_emulator, capsys, tmp_path, model):
    code = cli.main(["generate", "a lighthouse at dusk", "-m", model, "-n", "1", "--seed", "3", "-o", str(tmp_path / "o")])
    out, err = capsys.readouterr()
    assert code == 0, err
    (png,) = sorted((tmp_path / "o").glob("*.png"))
    record = json.loads(png.with_suffix(".json").read_text(encoding="utf-8"))
    assert record["model"] == model and record["images"][0]["seed"] == 3
    assert model in out
    sends = [r for r in cli_emulator.request_log if r.method == "POST"]
    assert len(sends) == 1 and (ASYNC_HEADER in {k.lower() for k in sends[0].headers}) is (model not in SYNC_ONLY)


def test_models_lists_status_and_protocol(cli_emulator, capsys):
    assert cli.main(["models"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["qwen-image-max"][1:3] == ["current", "sync"]
    assert rows["wan2.6-t2i"][1:3] == ["current", "async"]
    assert rows["wanx-v1"][1:3] == ["legacy", "async"]
    assert "2/min" in rows["qwen-image-max"]
    assert set(CATALOG_NAMES) <= set(rows)


# ---- sync calls in the journal ------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault.drop_after(), Fault.status(500, after=True), Fault.body(b"<html>", after=True)])
def test_a_lost_sync_answer_is_unknown_journalled_and_never_sent_again(session, emulator, fault):
    emulator.script("generate", fault)
    run = session.start([GenerationRequest("a kite", model="qwen-image-max", seed=4)])
    (outcome,) = run.result()
    assert isinstance(outcome, SyncOutcomeUnknownError)
    assert outcome.billed is None and "cannot be looked up" in str(outcome) and "not retried" in str(outcome)
    assert run.summary().unfinished == ()  # nothing a resume can finish: no "resume saves it" from the run
    (entry,) = session.store.unfinished()
    assert entry.state is EntryState.OUTCOME_UNKNOWN and entry.task_id is None
    assert len(emulator.requests("generate")) == 1

    report = session.resume()
    (unfinished,) = report.unfinished
    assert isinstance(unfinished, TaskUnfinishedError) and unfinished.code == "SyncOutcomeUnknown"
    assert "not sent again" in str(unfinished)
    assert report.text() == (
        "1 sync call(s) whose answer was lost: what they made cannot be looked up (check the bill in the console)"
    )
    assert len(emulator.requests("generate")) == 1  # resume looked, never re-sent
    assert [r for r in emulator.request_log if r.route in ("list", "query")] == []  # nothing to look up
    assert session.store.entry(entry.entry_id).state is EntryState.OUTCOME_UNKNOWN


def test_a_lost_sync_answer_does_not_block_sending_the_request_again(session, emulator):
    # Resume can never settle a sync call whose answer was lost (no task to look up): `reuse`
    # (and the panel) do not refuse the request for 24 h as they do a task that resume can collect.
    emulator.script("generate", Fault.drop_after())
    request = GenerationRequest("a kite", model="qwen-image-max", seed=4)
    assert session.sent_unfinished(request) is None  # never sent: nothing to refuse
    (lost,) = session.start([request]).result()
    assert isinstance(lost, SyncOutcomeUnknownError) and session.sent_unfinished(request) is None
    again = session.generate(request, reuse=True)
    assert isinstance(again, GenerationResult) and len(emulator.requests("generate")) == 2
    emulator.script("query", Fault.status(400, code="InvalidParameter"))  # a task left unfinished: resume collects it
    task = GenerationRequest("a kite", model="wanx2.1-t2i-turbo", seed=4)
    session.start([task]).result()
    assert session.sent_unfinished(task) is not None
    with pytest.raises(ReuseUnfinishedError):
        session.generate(task, reuse=True)


def test_a_refused_sync_call_is_rejected_not_unknown(session, emulator):
    emulator.script("generate", Fault.status(400))
    (outcome,) = session.start([GenerationRequest("a kite", model="z-image-turbo", seed=4)]).result()
    assert getattr(outcome, "status", None) == 400
    assert session.store.unfinished() == []


async def test_submit_refuses_a_sync_only_model_and_sends_nothing():
    emu = Emulator(EmulatorSettings(time_scale=0.001))
    async with AsyncWanxClient(emulator=emu) as client:
        with pytest.raises(ConfigurationError, match="only the synchronous endpoint.*use generate"):
            await client.submit(GenerationRequest("a kite", model="qwen-image-2.0"))
    assert emu.request_log == []


def test_sync_results_replay_from_the_store(tmp_path, emulator):
    request = GenerationRequest("a paper boat", model="qwen-image-max", seed=8)
    recorded = Session(store=tmp_path / "s", emulator=emulator, mode="record").generate(request)
    assert recorded.task_id is None
    before = len(emulator.request_log)
    replayed = Session(store=tmp_path / "s", emulator=emulator, mode="replay").generate(request)
    assert replayed.replayed and len(emulator.request_log) == before
    assert replayed.images[0].data == recorded.images[0].data
    assert replayed.task.request_id == recorded.task.request_id


# ---- limits: 2 per minute on a fake clock, and the estimate ------------------------------------------


async def test_a_qwen_image_max_grid_keeps_two_submits_per_minute_on_a_fake_clock():
    emu = Emulator(EmulatorSettings(clock="fake", time_scale=0.01))  # the emulator enforces 2/min too
    time = FakeTime(emu)
    client = AsyncWanxClient(canary_key(), emulator=emu)
    client._clock = client._wall = time.now
    client._sleep = time.sleep
    driver = asyncio.create_task(time.drive())
    sent_at: list[float] = []
    try:
        requests = [GenerationRequest(f"prompt {i}", model="qwen-image-max", seed=i) for i in range(6)]
        results = await client.generate_many(requests, on_sending=lambda r: sent_at.append(time.now()))
    finally:
        driver.cancel()
        await client.aclose()
    assert all(isinstance(r, GenerationResult) for r in results), results
    start = min(sent_at)
    offsets = sorted(t - start for t in sent_at)
    # At most 2 in any 60 s window, and no later than the limit requires (the client's margin aside).
    assert all(offsets[i + 2] - offsets[i] >= 60 for i in range(len(offsets) - 2)), offsets
    assert offsets[-1] < 2 * 60 + 1
    assert len(emu.requests("generate")) == 6  # never throttled, so never re-sent after a 429


async def test_a_qwen_image_max_call_that_cannot_connect_gives_up_rather_than_wait_a_minute():
    # 2 submits a minute: a third try would wait a minute for its turn, for a service it cannot reach.
    emu = Emulator(EmulatorSettings(clock="fake", time_scale=0.01))
    emu.script("generate", *[Fault.drop_before()] * 4)  # a refused connection on every try
    time = FakeTime(emu)
    client = AsyncWanxClient(canary_key(), emulator=emu)
    client._clock = client._wall = time.now
    client._sleep = time.sleep
    driver = asyncio.create_task(time.drive())
    start = time.now()
    try:
        with pytest.raises(APIConnectionError) as info:
            await client.generate(GenerationRequest("a fox", model="qwen-image-max", seed=1))
    finally:
        driver.cancel()
        await client.aclose()
    assert info.value.sent is False  # so the Run records it as never sent, not billed
    assert time.now() - start < 10  # two tries (the limit's two turns), a backoff between them
    assert emu.request_log == []


def test_the_estimate_reflects_per_minute_and_per_region_limits():
    max_grid = [GenerationRequest(f"p{i}", model="qwen-image-max") for i in range(4)]
    typical = get_model("qwen-image-max").expected_seconds(True)
    assert estimate_seconds(max_grid) == pytest.approx(60 + typical)  # 2 now, 2 a minute later
    assert estimate_seconds(max_grid[:2]) == pytest.approx(typical)
    wan = [GenerationRequest(f"p{i}", model="wan2.6-t2i", n=1) for i in range(5)]
    # 1 submit per second in Beijing, 5 elsewhere: the same batch starts 4 s later in Beijing.
    assert estimate_seconds(wan, "beijing") - estimate_seconds(wan, "singapore") == pytest.approx(4.0)
    turbo = [GenerationRequest(f"p{i}", model="z-image-turbo") for i in range(4)]
    assert estimate_seconds(max_grid + turbo) == estimate_seconds(max_grid)  # models run side by side


# ---- regions and workspaces -------------------------------------------------------------------------


async def test_a_model_outside_its_regions_is_refused_before_sending():
    emu = Emulator(EmulatorSettings(time_scale=0.001, region="virginia"))
    async with AsyncWanxClient(emulator=emu, region="virginia") as client:
        with pytest.raises(ValidationError, match="virginia.*qwen-image-max is offered in beijing, singapore only"):
            await client.generate(GenerationRequest("a kite", model="qwen-image-max"))
        result = await client.generate(GenerationRequest("a kite", model="wan2.6-t2i", n=1))
    assert result.images[0].data
    assert len([r for r in emu.request_log if r.method == "POST"]) == 1


async def test_frankfurt_goes_through_the_workspace_domain():
    with pytest.raises(ConfigurationError, match="workspace-dedicated domain"):
        AsyncWanxClient(canary_key(), region="frankfurt")
    async with AsyncWanxClient(canary_key(), region="frankfurt", workspace="ws-abc123") as client:
        assert client.base_url == "https://ws-abc123.eu-central-1.maas.aliyuncs.com/api/v1"
        assert canary_key() not in repr(client)
    async with AsyncWanxClient(canary_key(), region="singapore", workspace="ws-abc123", workspace_domain=True) as client:
        assert client.base_url == "https://ws-abc123.ap-southeast-1.maas.aliyuncs.com/api/v1"
    with pytest.raises(ConfigurationError, match="unknown region 'mars'.*frankfurt"):
        AsyncWanxClient(canary_key(), region="mars")


async def test_frankfurt_serves_wan26_and_refuses_the_qwen_family_before_sending():
    emu = Emulator(EmulatorSettings(time_scale=0.001, region="frankfurt"))
    async with AsyncWanxClient(emulator=emu, region="frankfurt", workspace="ws-abc123") as client:
        ok = await client.generate(GenerationRequest("a kite", model="wan2.6-t2i", n=1))
        with pytest.raises(ValidationError, match="frankfurt"):
            await client.generate(GenerationRequest("a kite", model="z-image-turbo"))
    assert ok.images[0].data and len([r for r in emu.request_log if r.method == "POST"]) == 1


# ---- the magic: every added model ------------------------------------------------------------------------


@pytest.fixture
def shell(wanx_shell, session):
    from wanx_nb._session import set_session

    set_session(session)
    return wanx_shell


@pytest.mark.parametrize("model", [spec.name for spec in CATALOG_2026])  # every protocol: T2I, IMG, MMG
def test_the_magic_generates_with_every_added_model(shell, emulator, model):
    shell.run_cell_magic("wanx", f"-m {model} -n 1 --seed 2 -o res --no-display", "a red fox in snow")
    result = shell.user_ns["res"]
    assert isinstance(result, GenerationResult) and result.model == model
    assert result.images[0].path
    (sent,) = [r for r in emulator.request_log if r.method == "POST"]
    protocol = preferred_protocol(get_model(model))
    assert sent.path == "/api/v1" + protocol.path
    assert (ASYNC_HEADER in {k.lower() for k in sent.headers}) is protocol.is_async


def test_the_magic_models_table_shows_status_and_protocol(shell):
    data, _ = shell.run_line_magic("wanx", "models")._repr_mimebundle_()
    html = data["text/html"]
    for name in CATALOG_NAMES:
        assert f"<td>{name}</td>" in html
    assert "sync (multimodal-generation)" in html and "async task (image-generation)" in html
    assert "<td>current</td>" in html and "<td>legacy</td>" in html


def test_resume_saves_a_sync_calls_billed_image_from_its_recorded_url_without_calling_again(session, emulator):
    from wanx_nb._constants import DEFAULT_MAX_RETRIES

    emulator.script("image", *[Fault.status(500)] * (DEFAULT_MAX_RETRIES + 1))  # every download attempt fails
    (outcome,) = session.start([GenerationRequest("a kite", model="z-image-turbo", seed=4)]).result()
    assert isinstance(outcome, GenerationResult) and outcome.billed_images == 1 and not outcome.images[0].path
    (entry,) = session.store.unfinished()
    assert entry.state is EntryState.COLLECTING and entry.task_id is None

    report = session.resume()
    (recovered,) = report.recovered
    assert recovered.images[0].path and Path(recovered.images[0].path).is_file()
    assert session.store.entry(entry.entry_id).state is EntryState.DONE
    assert len(emulator.requests("generate")) == 1  # the image was fetched again, the call was not
    assert session.resume().recovered == []  # nothing left


def test_a_run_stopped_during_a_sync_call_keeps_it_unknown_and_never_resends(session, emulator):
    from wanx_nb._exceptions import RunTimeoutError

    emulator.script("generate", Fault.delay(5.0))  # the call is on the wire when the run stops
    run = session.start([GenerationRequest("a kite", model="qwen-image-2.0", seed=4)])
    with pytest.raises(RunTimeoutError):
        run.result(timeout=0.5)
    (entry,) = session.store.unfinished()
    assert entry.state is EntryState.OUTCOME_UNKNOWN and "synchronous call" in entry.message
    (outcome,) = run.outcomes
    assert isinstance(outcome, TaskUnfinishedError) and outcome.code == "SyncOutcomeUnknown"
    session.resume()
    assert len(emulator.requests("generate")) == 1


def test_z_image_turbo_rewrites_only_when_asked_and_costs_more_then(session):
    plain = session.generate(GenerationRequest("a kite", model="z-image-turbo", seed=1))
    rewritten = session.generate(GenerationRequest("a kite", model="z-image-turbo", seed=1, prompt_extend=True))
    assert plain.request.effective_prompt_extend is False  # the service's default for this model
    assert (plain.cost_yuan, rewritten.cost_yuan) == (0.1, 0.2)
