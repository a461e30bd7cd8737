"""The `wanx-nb` command, run in-process (`cli.main([...])`) with no API key, so the emulator answers.

The process-wide default emulator (what a keyless client uses) is swapped for a fast one, which also
lets the tests see every request it received. `emulator` is also checked as a real served process.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from wanx_nb import cli
from wanx_nb._exceptions import ValidationError
from wanx_nb._registry import get_model
from wanx_nb._request import GenerationRequest
from wanx_nb._validation import validate
from wanx_nb.emulator import EMULATOR_HEADER, Emulator, EmulatorSettings

GUIDE_MODELS = ["wanx2.1-t2i-plus", "wanx2.1-t2i-turbo", "wanx2.0-t2i-turbo", "wanx-v1"]
GUIDE_PRICES = {"wanx2.1-t2i-plus": "0.20", "wanx2.1-t2i-turbo": "0.14", "wanx2.0-t2i-turbo": "0.04", "wanx-v1": "0.16"}
ENV_CLEARED = [
    "DASHSCOPE_API_KEY",
    "DASHSCOPE_HTTP_BASE_URL",
    "DASHSCOPE_REGION",
    "DASHSCOPE_WORKSPACE_ID",
    "WANX_NB_MODE",
    "WANX_NB_BUDGET_YUAN",
]


@pytest.fixture
def emulator(monkeypatch, tmp_path):
    """No key anywhere, the store in tmp, the cwd in tmp, and a fast default emulator."""
    for name in ENV_CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANX_NB_STORE", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    fast = Emulator(EmulatorSettings(time_scale=0.001))
    monkeypatch.setattr("wanx_nb.emulator._emulator._default", fast)
    return fast


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---- generate --------------------------------------------------------------------------------------


def test_generate_writes_pngs_and_records_and_prints_a_summary(emulator, capsys, tmp_path):
    out_dir = tmp_path / "out"
    code, out, err = run(
        capsys, "generate", "a red fox", "-m", "wanx2.1-t2i-turbo", "-n", "2", "--seed", "5", "--size", "1024*768",
        "-o", str(out_dir),
    )
    assert code == 0, err
    pngs = sorted(out_dir.glob("*.png"))
    assert len(pngs) == 2
    records = []
    for png in pngs:
        with Image.open(png) as im:
            assert im.format == "PNG" and im.size == (1024, 768)
        record = json.loads(png.with_suffix(".json").read_text(encoding="utf-8"))
        records.append(record)
        assert record["model"] == "wanx2.1-t2i-turbo"
        assert record["task_id"] and record["backend"] == "emulator"
        assert record["image"]["actual_prompt"]
        assert Path(record["image"]["path"]).is_relative_to(tmp_path / "store")  # $WANX_NB_STORE
    assert sorted(r["image"]["seed"] for r in records) == [5, 6]
    assert len({r["task_id"] for r in records}) == 1
    assert len(emulator.requests("create")) == 1

    assert "wanx2.1-t2i-turbo" in out
    assert "¥0.28" in out  # 2 x ¥0.14
    for r in records:
        assert f"seed {r['image']['seed']}" in out
        assert r["image"]["actual_prompt"] in out
    assert str(out_dir) in out and str(tmp_path / "store") in out
    assert cli.EMULATOR_NOTICE in out


def test_store_option_wins_over_the_environment(emulator, capsys, tmp_path):
    code, out, err = run(capsys, "--store", str(tmp_path / "mine"), "generate", "a fox", "--seed", "1")
    assert code == 0, err
    assert list((tmp_path / "mine" / "images").glob("*.png"))
    assert not (tmp_path / "store").exists()
    assert list((tmp_path / "wanx_output").glob("*.json"))  # the default output directory, in the cwd


VALIDATION_CASES = {
    "v1 size": (["-m", "wanx-v1", "--size", "1024*768"], dict(model="wanx-v1", size="1024*768")),
    "n too big": (["-n", "5"], dict(n=5)),
    "v1 param on v2": (
        ["-m", "wanx2.1-t2i-turbo", "--style", "<watercolor>"], dict(model="wanx2.1-t2i-turbo", style="<watercolor>")
    ),
    "unknown model": (["-m", "wanx-v9"], dict(model="wanx-v9")),
    "negative seed": (["--seed", "-1"], dict(seed=-1)),
}


@pytest.mark.parametrize("argv, fields", VALIDATION_CASES.values(), ids=VALIDATION_CASES.keys())
def test_validation_errors_print_the_core_message_and_send_nothing(emulator, capsys, tmp_path, argv, fields):
    with pytest.raises(ValidationError) as expected:
        validate(GenerationRequest("a fox", **fields))
    code, out, err = run(capsys, "generate", "a fox", *argv)
    assert code == 2
    assert err == f"error: {expected.value}\n"
    assert out == ""
    assert emulator.request_log == []
    assert not (tmp_path / "wanx_output").exists()


# ---- models, resume ----------------------------------------------------------------------------------


def test_models_lists_the_guide_models_with_prices(emulator, capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    for model in GUIDE_MODELS:
        assert model in rows
        assert GUIDE_PRICES[model] in rows[model].split()
        assert f"{get_model(model).price_yuan:.2f}" == GUIDE_PRICES[model]
    assert emulator.request_log == []


def test_resume_with_nothing_pending_recovers_nothing(emulator, capsys):
    code, out, _ = run(capsys, "resume")
    assert code == 0
    assert out.splitlines()[-1] == "nothing to resume: every task in the journal is finished"


# ---- export, rerun -----------------------------------------------------------------------------------


@pytest.fixture
def exported(emulator, capsys, tmp_path):
    argv = ["generate", "a red fox", "-m", "wanx2.1-t2i-turbo", "-n", "2", "--seed", "5", "--size", "768*512"]
    assert cli.main(argv) == 0
    assert cli.main(["generate", "a harbour", "-m", "wanx-v1", "--seed", "9"]) == 0
    capsys.readouterr()
    manifest = tmp_path / "manifest.json"
    code, out, _ = run(capsys, "export", str(manifest))
    assert code == 0
    assert out.strip() == f"wrote 2 generation(s) to {manifest}"
    return manifest


def test_rerun_of_an_exported_manifest_reports_every_image_same(exported, capsys):
    code, out, err = run(capsys, "rerun", str(exported))
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["same", "same", "same"]
    assert lines[-1] == "3 same"


def test_rerun_in_another_store_reports_every_image_same(exported, capsys, tmp_path):
    code, out, _ = run(capsys, "--store", str(tmp_path / "elsewhere"), "rerun", str(exported))
    assert code == 0
    assert out.splitlines()[-1] == "3 same"


def test_rerun_with_a_tampered_hash_reports_differs_and_exits_1(exported, capsys):
    manifest = json.loads(exported.read_text(encoding="utf-8"))
    manifest["generations"][0]["images"][1]["sha256"] = "f" * 64
    exported.write_text(json.dumps(manifest), encoding="utf-8")
    code, out, _ = run(capsys, "rerun", str(exported))
    assert code == 1
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["same", "differs", "same"]
    assert "seed 6" in lines[1] and "ffffffffffff ->" in lines[1]
    assert lines[-1] == "1 differs, 2 same"


# ---- emulator ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_emulator_command_serves_the_api_on_loopback(tmp_path):
    port = free_port()
    log = (tmp_path / "emulator.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wanx_nb.cli", "emulator", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}/api/v1/tasks/no-such-task"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "emulator.log").read_text()
            try:
                response = httpx.get(url, headers={"Authorization": "Bearer sk-test"}, timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the emulator did not answer on port {port}")
                time.sleep(0.05)
        assert response.status_code == 200
        assert response.headers[EMULATOR_HEADER].startswith("wanx_nb-emulator/")
        body = response.json()
        assert body["output"] == {"task_id": "no-such-task", "task_status": "UNKNOWN"}
        assert body["request_id"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            proc.wait()
        log.close()
    assert "127.0.0.1" in (tmp_path / "emulator.log").read_text()
