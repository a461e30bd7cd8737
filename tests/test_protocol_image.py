"""The messages-based endpoints' answers, without I/O (2026 spec §3.4, §4.2)."""

from __future__ import annotations

import pytest

from wanx_nb._models import TaskStatus
from wanx_nb._protocol import image_results, parse_task
from wanx_nb._protocol_image import choice_results, usage_size
from wanx_nb._request import GenerationRequest


def test_every_choice_and_every_image_item_is_a_result():
    # One choice per image (the docs) and several images in one content list (a third-party fixture).
    output = {"choices": [
        {"message": {"content": [{"image": "https://h/a.png", "type": "image"}]}},
        {"message": {"content": [{"image": "https://h/b.png"}, {"image": "https://h/c.png"}]}},
        {"message": {"content": [{"type": "text", "text": ""}]}},  # no image: not a result
        "garbage",
    ]}  # fmt: skip
    assert [r["url"] for r in choice_results(output)] == ["https://h/a.png", "https://h/b.png", "https://h/c.png"]


def test_an_image_generation_task_reads_like_a_legacy_task():
    body = {"request_id": "r", "output": {"task_id": "t-1", "task_status": "SUCCEEDED", "finished": True, "choices": [
        {"finish_reason": "stop", "message": {"role": "assistant", "content": [{"image": "https://h/a.png", "type": "image"}]}}]},
        "usage": {"size": "2985*1405", "image_count": 1, "input_tokens": 18790, "output_tokens": 2}}  # fmt: skip
    task = parse_task(body)
    assert task.status is TaskStatus.SUCCEEDED and task.image_count == 1
    (image,) = image_results(task, GenerationRequest("p", model="wan2.7-image-pro", size="2K", seed=1))
    assert image.url == "https://h/a.png" and image.size == "2985*1405"  # a tier: the size the service made


@pytest.mark.parametrize(
    "usage, size",
    [
        ({"size": "1280*1280", "image_count": 1}, "1280*1280"),
        ({"width": 1664, "height": 928, "image_count": 1}, "1664*928"),
        ({"output_width": 1024, "output_height": 1536, "output_image_count": 1}, "1024*1536"),
        ({"image_count": 1}, None),
        (None, None),
    ],
)
def test_usage_says_the_size_made_in_every_familys_fields(usage, size):
    assert usage_size(usage) == size


def test_a_given_size_stays_the_images_size():
    body = {"output": {"task_id": "t", "task_status": "SUCCEEDED", "choices": [
        {"message": {"content": [{"image": "https://h/a.png"}]}}]}, "usage": {"width": 1, "height": 1}}  # fmt: skip
    (image,) = image_results(parse_task(body), GenerationRequest("p", model="qwen-image-plus", size="1328*1328", seed=0))
    assert image.size == "1328*1328"
