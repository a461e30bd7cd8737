"""A scripted drop is taken by exactly one request, in-process."""

import httpx
import pytest

from wanx_nb.emulator import EMULATOR_BASE_URL, Emulator, EmulatorSettings, Fault

BODY = {"model": "wanx2.1-t2i-turbo", "input": {"prompt": "fox"}, "parameters": {"n": 1}}
HEADERS = {"Authorization": "Bearer sk-test", "X-DashScope-Async": "enable"}


async def test_each_scripted_drop_after_is_used_by_one_request():
    emu = Emulator(EmulatorSettings(clock="fake"))
    emu.script("create", Fault.drop_after(), Fault.drop_after())
    async with httpx.AsyncClient(transport=emu.transport(), base_url=EMULATOR_BASE_URL) as http:
        for _ in range(2):
            with pytest.raises(httpx.ReadTimeout):
                await http.post("/services/aigc/text2image/image-synthesis", json=BODY, headers=HEADERS)
        emu.advance(1.0)  # past the 2-per-second submit window
        ok = await http.post("/services/aigc/text2image/image-synthesis", json=BODY, headers=HEADERS)
    assert ok.status_code == 200
    assert len(emu.tasks) == 3  # "after": each dropped request still created its task
