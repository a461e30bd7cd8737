"""A notebook recorded once re-runs offline in replay mode with byte-identical outputs (issue 4).

Recorded against a served emulator with a canary API key, then replayed with no key and a base URL
where nothing listens: any request would fail, so a green replay proves nothing was sent. Then nbval
checks the recorded notebook in replay mode, and the notebook, store and SQLite file are scanned for
the canary.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from wanx_nb.emulator import EmulatorSettings, running_server

CANARY = "sk-canary_5e1d0c9b_8a7f6e5d"

CELLS = [
    "%load_ext wanx_nb",
    "%%wanx -n 2 --seed 3 -o fox\na red fox in the snow, 电影级光照",
    "%%wanx -m wanx-v1 --style <watercolor>\nan unseeded lantern festival",  # the client picks the seed
    "import wanx_nb\nwanx_nb.compare(['a paper boat'], models=['wanx2.0-t2i-turbo', 'wanx-v1'], seed=8)",
    "fox.images[0].image.resize((64, 64))",  # a plain image/png output
    "print([im.seed for im in fox.images], fox.images[0].actual_prompt)",
]

IMAGE_URI = re.compile(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+")


def _notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    return nb


def _run(nb: nbformat.NotebookNode, cwd, env: dict[str, str | None], monkeypatch) -> None:
    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()


def _images(nb: nbformat.NotebookNode) -> list[str]:
    """Every image the notebook shows, in order: image/* outputs and data: URIs inside HTML."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for mime, value in out.get("data", {}).items():
                if mime.startswith("image/"):
                    found.append(value)
                elif mime == "text/html":
                    found.extend(IMAGE_URI.findall(value))
    return found


def _outputs(nb: nbformat.NotebookNode) -> list[list[dict]]:
    return [[{k: v for k, v in o.items() if k != "metadata"} for o in c.outputs] for c in nb.cells]


def test_recorded_notebook_replays_offline_byte_for_byte(tmp_path, monkeypatch):
    store = tmp_path / "store"
    recorded = _notebook()
    with running_server(EmulatorSettings(time_scale=0.002)) as server:
        _run(
            recorded,
            tmp_path,
            {"WANX_NB_MODE": "record", "WANX_NB_STORE": str(store), "DASHSCOPE_API_KEY": CANARY,
             "DASHSCOPE_HTTP_BASE_URL": server.base_url},
            monkeypatch,
        )
        assert server.emulator.requests("create")  # it really went over HTTP
    images = _images(recorded)
    assert len(images) >= 6

    replayed = _notebook()
    _run(
        replayed,
        tmp_path,
        {"WANX_NB_MODE": "replay", "WANX_NB_STORE": str(store), "DASHSCOPE_API_KEY": None,
         "DASHSCOPE_HTTP_BASE_URL": "http://127.0.0.1:9/api/v1"},  # nothing listens: a request would fail
        monkeypatch,
    )
    assert _images(replayed) == images  # byte-identical image outputs
    for got, want in zip(_outputs(replayed), _outputs(recorded)):
        assert got == want, "\n".join(difflib.unified_diff(str(want).split("<"), str(got).split("<"), lineterm=""))
    path = tmp_path / "recorded.ipynb"
    nbformat.write(recorded, path)

    # nbval agrees: the recorded notebook validates in replay mode, offline.
    env = {**os.environ, "WANX_NB_MODE": "replay", "WANX_NB_STORE": str(store),
           "DASHSCOPE_HTTP_BASE_URL": "http://127.0.0.1:9/api/v1"}
    env.pop("DASHSCOPE_API_KEY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env", str(path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]

    # The canary key is nowhere: notebook outputs and metadata, store files, the SQLite index.
    scanned = [path.read_bytes()] + [p.read_bytes() for p in store.rglob("*") if p.is_file()]
    assert len(scanned) > 3
    for blob in scanned:
        assert CANARY.encode() not in blob and CANARY[3:].encode() not in blob
