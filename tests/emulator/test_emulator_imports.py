"""The emulator loads lazily: a keyless client uses it in-process without loading the HTTP server."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, os, sys
for name in ("DASHSCOPE_API_KEY", "WANX_NB_API_KEY"):
    os.environ.pop(name, None)
import wanx_nb.emulator
after_import = sorted(m for m in ("uvicorn", "starlette") if m in sys.modules)
from wanx_nb import AsyncWanxClient
client = AsyncWanxClient()
print(json.dumps({
    "after_import": after_import,
    "backend": client.backend,
    "uvicorn": "uvicorn" in sys.modules,
    "server": "wanx_nb.emulator.server" in sys.modules,
}))
"""


def test_a_keyless_client_uses_the_emulator_without_loading_uvicorn(tmp_path):
    # A fresh interpreter: this test process has long since imported everything.
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, cwd=tmp_path, timeout=120
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"after_import": [], "backend": "emulator", "uvicorn": False, "server": False}
