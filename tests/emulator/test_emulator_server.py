"""The emulator over real loopback HTTP: httpx, and the user guide's curl commands."""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import httpx
import pytest
from PIL import Image

from wanx_nb.emulator import EMULATOR_HEADER, Emulator, EmulatorSettings, running_server, serve

GUIDE_PROMPT = "生成一张新年祝福贺卡，背景有白雪，放鞭炮的小孩，蛇形成文案2025，并写上HAPPY NEW YEAR。"
GIRL = (
    "近景镜头，18岁的中国女孩，古代服饰，圆脸，正面看着镜头，民族优雅的服装，"
    "商业摄影，室外，电影级光照，半身特写，精致的淡妆，锐利的边缘。"
)
GIRL_URL = "https://help-static-aliyun-doc.aliyuncs.com/file-manage-files/zh-CN/20241031/rguyzt/girl.png"

# The request bodies of the guide's curl examples (seed file), verbatim.
GUIDE_BODIES = [
    {"model": "wanx2.1-t2i-turbo", "input": {"prompt": GUIDE_PROMPT}},
    {"model": "wanx2.0-t2i-turbo", "input": {"prompt": GUIDE_PROMPT}},
    {"model": "wanx-v1", "input": {"prompt": GUIDE_PROMPT}},
    {
        "model": "wanx2.1-t2i-turbo",
        "input": {"prompt": "火星上的城市，废土风格。"},
        "parameters": {"size": "1024*1024", "n": 2, "prompt_extend": True},
    },
    {
        "model": "wanx2.1-t2i-plus",
        "input": {"prompt": "国漫风格穿越少女，在古代宫廷中烛光照耀下学习礼仪一举一动皆显古风优雅"},
        "parameters": {"size": "768*1024", "n": 2, "prompt_extend": True},
    },
    {
        "model": "wanx2.1-t2i-turbo",
        "input": {"prompt": "浅水彩，咖啡馆外，明亮的白色背景，梦幻，吉卜力工作室。"},
        "parameters": {"size": "1024*1024", "n": 1, "prompt_extend": True, "watermark": True},
    },
    {
        "model": "wanx-v1",
        "input": {"prompt": GIRL, "negative_prompt": "红色元素"},
        "parameters": {"style": "<auto>", "size": "1024*1024", "n": 1},
    },
    {
        "model": "wanx-v1",
        "input": {"prompt": GIRL, "ref_image": GIRL_URL},
        "parameters": {"style": "<auto>", "size": "1024*1024", "n": 1, "ref_strength": 0.0, "ref_mode": "repaint"},
    },
    {
        "model": "wanx-v1",
        "input": {"prompt": GIRL, "ref_image": GIRL_URL},
        "parameters": {"style": "<auto>", "size": "1024*1024", "n": 1, "ref_strength": 1.0, "ref_mode": "repaint"},
    },
]


@pytest.fixture(scope="module")
def server():
    # time_scale 0: tasks finish as they are submitted; no rate limits: the guide's bodies go back to back.
    with running_server(EmulatorSettings(time_scale=0.0, rate_limits=False)) as live:
        yield live


def test_running_server_serves_the_api_over_loopback(server):
    headers = {"Authorization": "Bearer sk-loopback", "X-DashScope-Async": "enable"}
    body = {"model": "wanx2.1-t2i-turbo", "input": {"prompt": "a red fox"}, "parameters": {"n": 1, "size": "640*512"}}
    with httpx.Client(base_url=server.base_url, trust_env=False) as http:
        created = http.post("/services/aigc/text2image/image-synthesis", json=body, headers=headers)
        assert created.status_code == 200 and created.headers[EMULATOR_HEADER].startswith("wanx_nb-emulator/")
        task_id = created.json()["output"]["task_id"]
        done = http.get(f"/tasks/{task_id}", headers={"Authorization": "Bearer sk-loopback"}).json()
        assert done["output"]["task_status"] == "SUCCEEDED"
        url = done["output"]["results"][0]["url"]
        assert url.startswith(f"{server.origin}/emulator-results/")
        image = http.get(url)  # no Authorization: image hosts get none
    assert image.status_code == 200
    assert Image.open(io.BytesIO(image.content)).size == (640, 512)
    assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/api/v1")
    assert task_id in server.emulator.tasks


def test_running_server_stops_and_frees_the_port():
    with running_server(EmulatorSettings()) as live:
        origin = live.origin
        assert (
            httpx.get(f"{origin}/api/v1/tasks/x", headers={"Authorization": "Bearer k"}, trust_env=False).status_code
            == 200
        )
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{origin}/api/v1/tasks/x", trust_env=False)


def test_running_server_uses_a_given_emulator_and_its_fake_clock():
    emulator = Emulator(EmulatorSettings(clock="fake", time_scale=1.0))
    with running_server(emulator=emulator) as live:
        headers = {"Authorization": "Bearer sk-1"}
        body = {"model": "wanx-v1", "input": {"prompt": "x"}}
        task_id = httpx.post(
            f"{live.base_url}/services/aigc/text2image/image-synthesis",
            json=body,
            headers={**headers, "X-DashScope-Async": "enable"},
            trust_env=False,
        ).json()["output"]["task_id"]
        assert (
            httpx.get(f"{live.base_url}/tasks/{task_id}", headers=headers, trust_env=False).json()["output"][
                "task_status"
            ]
            == "RUNNING"
        )
        emulator.advance(30)
        assert (
            httpx.get(f"{live.base_url}/tasks/{task_id}", headers=headers, trust_env=False).json()["output"][
                "task_status"
            ]
            == "SUCCEEDED"
        )


def test_serve_binds_loopback_only():
    with pytest.raises(ValueError, match="loopback"):
        serve(host="0.0.0.0", port=1)


def curl(*args: str) -> tuple[int, str]:
    out = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout
    body, _, status = out.rpartition("\n")
    return int(status), body


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
@pytest.mark.parametrize(
    "body",
    GUIDE_BODIES,
    ids=lambda b: f"{b['model']}-{'-'.join(b.get('parameters', {}))}-{'ref' if 'ref_image' in b['input'] else ''}",
)
def test_guide_curl_examples_work_verbatim(server, body):
    key = "sk-curl"
    status, text = curl(
        "-X", "POST", f"{server.base_url}/services/aigc/text2image/image-synthesis",
        "-H", "X-DashScope-Async: enable",
        "-H", f"Authorization: Bearer {key}",
        "-H", "Content-Type: application/json",
        "-d", json.dumps(body, ensure_ascii=False),
    )  # fmt: skip
    assert status == 200, text
    task_id = json.loads(text)["output"]["task_id"]
    status, text = curl("-X", "GET", f"{server.base_url}/tasks/{task_id}", "-H", f"Authorization: Bearer {key}")
    assert status == 200
    output = json.loads(text)["output"]
    assert output["task_status"] == "SUCCEEDED", output
    expected_n = body.get("parameters", {}).get("n", 4)
    assert len(output["results"]) == expected_n
    task = server.emulator.tasks[task_id]
    if "ref_image" in body["input"]:
        assert task.ref == GIRL_URL  # the guide's field name is honoured
    with httpx.Client(trust_env=False) as http:
        image = Image.open(io.BytesIO(http.get(output["results"][0]["url"]).content))
    w, h = (int(x) for x in body.get("parameters", {}).get("size", "1024*1024").split("*"))
    assert image.size == (w, h)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--port", "99999"], "argument --port: '99999' is not a port; use a whole number from 1 to 65535"),
        (["--time-scale", "-1"], "argument --time-scale: '-1' is not allowed; use a number >= 0"),
        (["--time-scale", "nan"], "argument --time-scale: 'nan' is not allowed; use a number >= 0"),
        (["--region", "mars"], "invalid choice: 'mars'"),
    ],
)
def test_the_module_entry_point_refuses_bad_arguments_without_a_traceback(argv, says, capsys):
    from wanx_nb.emulator.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and says in capsys.readouterr().err
