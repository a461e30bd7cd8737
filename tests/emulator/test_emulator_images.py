"""Result images: signed URLs, expiry, PNG rendering that differs by model, style, seed and watermark."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageChops, ImageStat

from wanx_nb._registry import V1_STYLES
from wanx_nb.emulator import EMULATOR_HEADER, Emulator, EmulatorSettings
from wanx_nb.emulator._caption import CJK_FONT_ENV, cjk_font_path, draw_caption, font_draws_cjk
from wanx_nb.emulator._images import render_png

from .conftest import task_id_of


async def urls_of(
    submit, query, emulator, model: str = "wanx2.1-t2i-turbo", prompt: str = "a red fox", **params
) -> list[str]:
    task_id = task_id_of(await submit(model, prompt, **params))
    emulator.advance(60)
    body = await query(task_id)
    assert body["output"]["task_status"] == "SUCCEEDED", body
    return [r["url"] for r in body["output"]["results"] if "url" in r]


@pytest.fixture
async def plain(emulator):
    """A client that sends no Authorization header: image hosts must not see the API key."""
    async with httpx.AsyncClient(transport=emulator.transport()) as http:
        yield http


def png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def test_result_url_serves_a_png_of_the_requested_size(submit, query, emulator, plain):
    (url,) = await urls_of(submit, query, emulator, "wanx2.1-t2i-plus", n=1, size="768*1024")
    response = await plain.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers[EMULATOR_HEADER].startswith("wanx_nb-emulator/")
    image = png(response.content)
    assert (image.format, image.size, image.mode) == ("PNG", (768, 1024), "RGB")


async def test_images_are_deterministic_and_image_i_uses_seed_plus_i(submit, query, emulator, plain):
    two = await urls_of(submit, query, emulator, n=2, seed=5)
    emulator.advance(1)
    single = await urls_of(submit, query, emulator, n=1, seed=6)
    a, b, c = [(await plain.get(u)).content for u in (*two, *single)]
    assert a != b
    assert b == c  # image 2 of seed 5 is image 1 of seed 6

    fresh = Emulator(EmulatorSettings(clock="fake", time_scale=1.0))
    async with fresh.client(api_key="sk-test") as http, httpx.AsyncClient(transport=fresh.transport()) as raw:
        body = {"model": "wanx2.1-t2i-turbo", "input": {"prompt": "a red fox"}, "parameters": {"n": 2, "seed": 5}}
        task_id = task_id_of(
            await http.post(
                "/services/aigc/text2image/image-synthesis", json=body, headers={"X-DashScope-Async": "enable"}
            )
        )
        fresh.advance(60)
        again = (await http.get(f"/tasks/{task_id}")).json()["output"]["results"][0]["url"]
        assert (await raw.get(again)).content == a


@pytest.mark.parametrize("settings", [EmulatorSettings(clock="fake", time_scale=1.0, image_weight="service")])
async def test_service_weight_serves_the_same_picture_at_a_photographs_weight(submit, query, emulator, plain):
    # For sizing downloads, stores and memory offline: the service's 1024x1024 PNGs weigh about 2 MB.
    params = {"model": "wanx2.1-t2i-plus", "prompt": "a red fox", "seed": 7}
    (url,) = await urls_of(submit, query, emulator, **params, n=1, size="1024*1024")
    served = (await plain.get(url)).content
    light = render_png(**params, width=1024, height=1024)

    assert 1_500_000 < len(served) < 3_000_000 and len(light) < 300_000
    grained, plain_picture = png(served), png(light)
    assert grained.size == plain_picture.size == (1024, 1024)
    difference = ImageStat.Stat(ImageChops.difference(grained, plain_picture)).mean
    assert all(0 < level <= 8 for level in difference)  # grain over the same picture, not another one
    assert render_png(**params, width=1024, height=1024, grain=True) == served  # and as deterministic


def render(**overrides) -> Image.Image:
    args = dict(model="wanx2.1-t2i-turbo", prompt="a red fox", width=512, height=512, seed=1)
    args.update(overrides)
    return png(render_png(**args))


def differs(a: Image.Image, b: Image.Image) -> bool:
    return ImageChops.difference(a, b).getbbox() is not None


def test_every_model_looks_different():
    images = [
        render(model=m)
        for m in ("wanx2.1-t2i-plus", "wanx2.1-t2i-turbo", "wanx2.0-t2i-turbo", "wanx-v1", "wan2.2-t2i-flash")
    ]
    assert all(differs(x, y) for i, x in enumerate(images) for y in images[i + 1 :])


def test_every_v1_style_looks_different():
    images = [render(model="wanx-v1", style=s) for s in V1_STYLES]
    assert all(differs(x, y) for i, x in enumerate(images) for y in images[i + 1 :])


def test_seed_prompt_and_negative_prompt_change_the_image():
    base = render()
    assert differs(base, render(seed=2))
    assert differs(base, render(prompt="a blue fox"))
    assert differs(base, render(negative_prompt="red"))
    assert not differs(base, render())


def _captioned(prompt: str) -> Image.Image:
    image = Image.new("RGB", (512, 300), (90, 110, 130))
    draw_caption(image, prompt, "wanx-v1", 7)
    return image


def test_without_a_cjk_font_chinese_prompts_get_a_neutral_label_not_pseudo_glyphs(monkeypatch):
    monkeypatch.setenv(CJK_FONT_ENV, "none")
    assert cjk_font_path() is None
    # Two Chinese prompts give the same band: nothing prompt-shaped is drawn, only model, seed and size.
    assert not differs(_captioned("一只猫"), _captioned("一只狗"))
    assert differs(_captioned("一只猫"), Image.new("RGB", (512, 300), (90, 110, 130)))  # the label is there
    assert differs(_captioned("a cat"), _captioned("a dog"))  # Latin prompts are still drawn


def test_a_font_without_cjk_glyphs_does_not_count(monkeypatch, tmp_path):
    dejavu = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # what fc-match :lang=zh answers without CJK fonts
    if not Path(dejavu).is_file():
        pytest.skip("DejaVu Sans is not installed")
    assert not font_draws_cjk(dejavu) and not font_draws_cjk(str(tmp_path / "missing.ttf"))
    monkeypatch.setenv(CJK_FONT_ENV, dejavu)
    assert cjk_font_path() != dejavu  # named, but passed over for a font that draws Chinese (or none)


def test_with_a_cjk_font_chinese_prompts_are_drawn(monkeypatch):
    monkeypatch.delenv(CJK_FONT_ENV, raising=False)
    path = cjk_font_path()
    if path is None:
        pytest.skip("no CJK font on this machine (Debian: fonts-wqy-microhei or fonts-noto-cjk)")
    assert font_draws_cjk(path)
    drawn = _captioned("一只猫")
    assert differs(drawn, _captioned("一只狗"))
    monkeypatch.setenv(CJK_FONT_ENV, "none")
    assert differs(drawn, _captioned("一只猫"))  # drawn with the font, not the neutral label


def test_watermark_marks_only_the_bottom_right_corner():
    plain, marked = render(width=1024, height=768), render(width=1024, height=768, watermark=True)
    changed = ImageChops.difference(plain, marked).getbbox()
    assert changed is not None
    left, top, right, bottom = changed
    assert left > 1024 * 0.75 and top > 768 * 0.85 and right <= 1024 and bottom <= 768


def test_reference_image_is_blended_by_strength():
    red = io.BytesIO()
    Image.new("RGB", (300, 300), (255, 0, 0)).save(red, "PNG")
    full = render(model="wanx-v1", ref=red.getvalue(), ref_strength=1.0)
    none = render(model="wanx-v1", ref=red.getvalue(), ref_strength=0.0)
    r, g, b = full.crop((0, 100, 512, 512)).resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert r > 200 and g < 40 and b < 40
    assert not differs(none, render(model="wanx-v1"))
    assert differs(render(model="wanx-v1", ref="https://example.com/a.png"), render(model="wanx-v1"))


async def test_result_url_expires_24_hours_after_the_task_ends(submit, query, emulator, plain):
    task_id = task_id_of(await submit("wanx2.1-t2i-turbo", "x", n=1))
    emulator.advance(15.5)  # the task ends now
    url = (await query(task_id))["output"]["results"][0]["url"]
    emulator.advance(24 * 3600)
    assert (await plain.get(url)).status_code == 200
    emulator.advance(1)
    response = await plain.get(url)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/xml"
    assert "<Code>AccessDenied</Code>" in response.text
    assert "<Message>Request has expired.</Message>" in response.text
    assert "<Expires>" in response.text and "<ServerTime>" in response.text


async def test_tampered_url_is_signature_mismatch(submit, query, emulator, plain):
    (url,) = await urls_of(submit, query, emulator, n=1)
    forged = url.replace("-1.png", "-2.png")
    response = await plain.get(forged)
    assert response.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in response.text
    unsigned = await plain.get(url.split("?")[0])
    assert unsigned.status_code == 403 and "<Code>AccessDenied</Code>" in unsigned.text


async def test_sending_the_api_key_to_the_image_host_is_refused(submit, query, emulator, client):
    (url,) = await urls_of(submit, query, emulator, n=1)
    response = await client.get(url)  # this client carries Authorization: Bearer sk-test
    assert response.status_code == 400
    assert "<Code>InvalidArgument</Code>" in response.text


async def test_corrupt_image_word_serves_truncated_bytes(submit, query, emulator, plain):
    word = emulator.settings.corrupt_image_word
    (url,) = await urls_of(submit, query, emulator, prompt=f"x {word}", n=1)
    (good_url,) = await urls_of(submit, query, emulator, prompt="x", n=1)
    bad, good = (await plain.get(url)).content, (await plain.get(good_url)).content
    assert bad.startswith(b"\x89PNG") and len(bad) < len(good)
    with pytest.raises(OSError):
        png(bad)


async def test_failed_image_has_no_object(submit, query, emulator, plain):
    urls = await urls_of(submit, query, emulator, prompt=f"x {emulator.settings.partial_failure_word}", n=2)
    assert len(urls) == 1
    missing = urls[0].replace("-1.png", "-2.png")
    # The signature covers the path, so re-sign through the backend as if the URL had been issued.
    task_id = urls[0].split("/")[-1].split("-1.png")[0]
    signed = "http://emulator.wanx-nb.invalid" + emulator.backend.result_path(emulator.tasks[task_id], 1)
    assert signed.split("?")[0] == missing.split("?")[0]
    response = await plain.get(signed)
    assert response.status_code == 404 and "<Code>NoSuchKey</Code>" in response.text
