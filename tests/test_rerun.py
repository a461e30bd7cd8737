"""`rerun_manifest`: run a manifest's generations again and say, per image, whether it is the same."""

from __future__ import annotations

import copy

import pytest

from wanx_nb._request import GenerationRequest
from wanx_nb._session import Session
from wanx_nb.emulator import Emulator, EmulatorSettings
from wanx_nb.rerun import RerunReport, rerun_manifest


def fast_emulator() -> Emulator:
    return Emulator(EmulatorSettings(time_scale=0.001))


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """Recorded once: two generations (three images) in a store of their own."""
    first = Session(store=tmp_path_factory.mktemp("recorded"), emulator=fast_emulator())
    first.generate(GenerationRequest("a red fox", model="wanx2.1-t2i-turbo", n=2, seed=5, size="768*512"))
    first.generate(GenerationRequest("a watercolour harbour", model="wanx-v1", n=1, seed=9))
    return first.store.manifest()


@pytest.fixture
def session(tmp_path):
    """A re-run elsewhere: a new store and a new emulator (what the manifest is for)."""
    return Session(store=tmp_path / "store", emulator=fast_emulator())


def test_rerun_of_a_deterministic_backend_reports_every_image_same(session, manifest):
    # The emulator is deterministic: same request and seed, same bytes, in another store and process.
    report = rerun_manifest(manifest, session=session)
    assert [(r["model"], r["seed"], r["outcome"]) for r in report.rows] == [
        ("wanx2.1-t2i-turbo", 5, "same"),
        ("wanx2.1-t2i-turbo", 6, "same"),
        ("wanx-v1", 9, "same"),
    ]
    assert report.all_same
    assert report.counts() == {"same": 3}
    assert report.text().splitlines()[-1] == "3 same"
    assert all(r["old"] == r["new"] for r in report.rows)


def test_rerun_is_stored_like_any_generation_and_can_be_rerun_again(session, manifest):
    rerun_manifest(manifest, session=session)
    again = session.store.manifest()
    assert len(again["generations"]) == 2
    assert rerun_manifest(again, session=session).all_same


def test_a_changed_hash_is_reported_as_differs(session, manifest):
    tampered = copy.deepcopy(manifest)
    old = tampered["generations"][0]["images"][1]["sha256"]
    tampered["generations"][0]["images"][1]["sha256"] = "0" * 64
    report = rerun_manifest(tampered, session=session)
    assert [r["outcome"] for r in report.rows] == ["same", "differs", "same"]
    assert not report.all_same
    assert report.rows[1]["detail"] == f"{'0' * 12} -> {old[:12]}"
    assert report.text().splitlines()[-1] == "1 differs, 2 same"


def test_a_request_that_fails_now_is_reported_as_failed(session, manifest):
    broken = copy.deepcopy(manifest)
    # The emulator refuses prompts with its input-inspection word (400 DataInspectionFailed).
    broken["generations"][1]["request"]["prompt"] += " EMU_BLOCK_INPUT"
    report = rerun_manifest(broken, session=session)
    assert [r["outcome"] for r in report.rows] == ["same", "same", "failed"]
    assert "DataInspectionFailed" in report.rows[2]["detail"]
    assert report.rows[2]["new"] is None


def test_an_image_that_fails_now_is_reported_as_missing(session, manifest):
    broken = copy.deepcopy(manifest)
    # With this word the emulator fails the task's last image (InternalError.Timeout), keeping the first.
    broken["generations"][0]["request"]["prompt"] += " EMU_PARTIAL_FAILURE"
    report = rerun_manifest(broken, session=session)
    outcomes = [r["outcome"] for r in report.rows]
    assert outcomes[1:] == ["missing", "same"]
    assert outcomes[0] == "differs"  # another prompt, another image
    assert report.rows[1]["detail"] == "InternalError.Timeout"


def test_an_image_that_had_failed_is_reported_as_differs(session, manifest):
    recorded = copy.deepcopy(manifest)
    recorded["generations"][1]["images"][0]["sha256"] = None
    report = rerun_manifest(recorded, session=session)
    assert report.rows[2]["outcome"] == "differs"
    assert report.rows[2]["detail"] == "the recorded image had failed"


def test_a_generation_with_nothing_to_compare_is_refused_before_anything_is_sent(session, manifest):
    # It used to send every request, then fail on the generation without "images": paid, and no report.
    broken = copy.deepcopy(manifest)
    del broken["generations"][1]["images"]
    with pytest.raises(ValueError, match='^generation 2 has no "images" to compare with'):
        rerun_manifest(broken, session=session)
    assert session.store.history() == []  # nothing journaled, so nothing was sent


def test_an_empty_manifest_reruns_nothing(session):
    report = rerun_manifest({"generations": []}, session=session)
    assert report.rows == []
    assert report.text() == "nothing to re-run"
    assert isinstance(report, RerunReport) and report.all_same  # vacuously
