"""A result's image bytes are released once stored and read back from the stored file on use."""

from __future__ import annotations

import hashlib

from wanx_nb._request import GenerationRequest
from wanx_nb._session import Session
from wanx_nb.emulator import Emulator, EmulatorSettings


def test_stored_images_are_released_and_read_back_as_served(tmp_path):
    emulator = Emulator(EmulatorSettings(time_scale=0.001))
    session = Session(store=tmp_path / "store", emulator=emulator)
    result = session.generate(GenerationRequest("a red fox in snow", model="wanx2.1-t2i-turbo", n=2, seed=5))
    for im in result.succeeded:
        assert im.__dict__["_data"] is None  # nothing held in memory once on disk
        served = im.data  # read back from the stored file, without the provenance chunk
        assert served is not None and hashlib.sha256(served).hexdigest() == im.sha256
        assert im.image.size == (1024, 1024)
        assert im.__dict__["_data"] is None  # reading does not pin the bytes again


def test_bytes_are_kept_when_there_is_no_stored_file(tmp_path):
    from wanx_nb._models import ImageResult

    im = ImageResult(0, 1, "8*8", url="https://example.invalid/x.png", data=b"\x89PNG...")
    assert not im.release() and im.data == b"\x89PNG..."
    im.path = str(tmp_path / "missing.png")
    assert not im.release() and im.data == b"\x89PNG..."  # the file is not there: keep what was paid for
