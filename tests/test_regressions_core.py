"""Survivors of the mutation run over the pure core (tools/mutation.py), killed by what a user relies on:
each broken rule names its parameter (as the user spelled it) and the bad value; the replay key of a
recorded request never changes between versions; messages describe a request legibly.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from PIL import Image

from wanx_nb._exceptions import ValidationError
from wanx_nb._registry import MODELS
from wanx_nb._request import MAX_SEED, GenerationRequest
from wanx_nb._validation import validate

NAMES = {"prompt_extend": "--extend", "n": "-n", "ref_mode": "--ref-mode"}  # as the magic spells them

# (request fields, the problem's parameter as named by NAMES, what the allowed text must say)
BROKEN = [
    ({"model": "nope"}, "model", "not a known model 'nope'; use one of " + ", ".join(MODELS)),
    ({"model": "wanx2.1-t2i-turb"}, "model", "not a known model 'wanx2.1-t2i-turb' (did you mean 'wanx2.1-t2i-turbo' or"
     " 'wan2.1-t2i-turbo' or 'wanx2.0-t2i-turbo'?); use one of " + ", ".join(MODELS)),
    ({"model": None}, "model", "a model id; use one of " + ", ".join(MODELS)),
    ({"prompt": ""}, "prompt", "a non-empty text (Chinese or English)"),
    ({"negative_prompt": 3}, "negative_prompt", "a text"),
    ({"size": "10x"}, "size", "a size written W*H in whole pixels above 0, e.g. 1024*1024; W*H with each side between"
     " 512 and 1440"),
    ({"model": "wanx-v1", "size": "512*512"}, "size", "wanx-v1 supports only 1024*1024, 720*1280, 768*1152, 1280*720"),
    ({"size": "4000*4000"}, "size", "W*H with each side between 512 and 1440 pixels"),
    ({"size": "1440*1441"}, "size", "W*H with each side between 512 and 1440"),
    ({"size": "511*1024"}, "size", "W*H with each side between 512 and 1440"),
    *[({"model": "wan2.5-t2i-preview", "size": size}, "size", "W*H with W*H between 589824 and 2073600 pixels and"
       " aspect ratio between 1:4 and 4:1") for size in ("767*768", "1441*1440", "2100*512", "512*2100")],
    ({"n": 0}, "-n", "an integer from 1 to 4"),
    ({"n": 5}, "-n", "an integer from 1 to 4"),
    ({"n": True}, "-n", "an integer from 1 to 4"),
    ({"seed": -1}, "seed", f"an integer from 0 to {MAX_SEED}"),
    ({"seed": MAX_SEED + 1, "n": 1}, "seed", f"an integer from 0 to {MAX_SEED}"),
    ({"seed": MAX_SEED - 2, "n": 4}, "seed", f"with -n 4, image i uses seed + i, so the seed must be at most {MAX_SEED - 3}"),
    ({"prompt_extend": "yes"}, "--extend", "true or false"),
    ({"watermark": 1}, "watermark", "true or false"),
    ({"model": "wanx-v1", "style": "<nope>"}, "style", "one of <auto>, <photography>"),
    ({"model": "wanx-v1", "ref_img": "https://x/a.png", "ref_strength": 1.5}, "ref_strength", "a number from 0.0 to 1.0"),
    ({"model": "wanx-v1", "ref_img": "https://x/a.png", "ref_strength": -0.1}, "ref_strength", "a number from 0.0 to 1.0"),
    ({"model": "wanx-v1", "ref_img": "https://x/a.png", "ref_strength": True}, "ref_strength", "a number from 0.0 to 1.0"),
    ({"model": "wanx-v1", "ref_img": "https://x/a.png", "ref_mode": "x"}, "--ref-mode",
     "'repaint' (follow the content) or 'refonly' (follow the style)"),
    ({"model": "wanx-v1", "ref_img": ""}, "ref_img", "an http(s) URL, an oss:// URL or a local image path"),
    ({"model": "wanx-v1", "ref_img": "https://x/狐.png"}, "ref_img", "a URL without Chinese characters"),
    ({"model": "wanx-v1", "ref_img": "http://x/狐.png"}, "ref_img", "a URL without Chinese characters"),
    ({"model": "wanx-v1", "ref_img": "/no/such.png"}, "ref_img", "an existing local file, an http(s) URL or an oss:// URL"),
    ({"model": "wanx-v1", "prompt_extend": True}, "--extend",
     "wanx-v1 (V1) does not take --extend; it is a V2 parameter. It takes: prompt, negative_prompt, size, -n, seed, "
     "style, ref_img, ref_strength, --ref-mode"),
]  # fmt: skip


def case_id(fields: dict) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", ",".join(f"{k}={v}" for k, v in fields.items()))


@pytest.mark.parametrize("fields, param, allowed", BROKEN, ids=[case_id(b[0]) for b in BROKEN])
def test_each_broken_rule_names_its_parameter_the_value_and_what_is_allowed(fields, param, allowed):
    request = GenerationRequest(**{"prompt": "a fox", "model": "wanx2.1-t2i-turbo", **fields})
    with pytest.raises(ValidationError) as info:
        validate(request, names=NAMES)
    (problem,) = info.value.problems
    value = fields.get("model", "") if param == "model" else next(v for k, v in fields.items() if NAMES.get(k, k) == param)
    assert problem.param == param and problem.value == value
    assert problem.allowed.startswith(allowed), problem.allowed
    assert info.value.model == (str(fields["model"]) if param == "model" else request.model)
    assert f"{param}={value!r}" in str(info.value)


EDGES = [
    {"size": "512*1440"}, {"size": "1440*512"}, {"seed": 0}, {"seed": MAX_SEED - 3, "n": 4}, {"n": 1}, {"n": 4},
    {"model": "wanx-v1", "ref_img": "https://x/a.png", "ref_strength": 0.0, "ref_mode": "refonly"},
    {"model": "wanx-v1", "ref_img": "https://x/a.png", "ref_strength": 1}, {"model": "wanx-v1", "style": "<sketch>"},
    {"model": "wanx-v1", "ref_img": "http://x/a.png"}, {"model": "wanx-v1", "ref_img": "oss://dir/a.png"},
    *[{"model": "wan2.5-t2i-preview", "size": size} for size in ("768*768", "1440*1440", "2048*512", "512*2048")],
]  # fmt: skip


@pytest.mark.parametrize("fields", EDGES, ids=[case_id(f) for f in EDGES])
def test_values_on_the_edge_of_each_range_pass(fields):
    assert validate(GenerationRequest(**{"prompt": "a fox", "model": "wanx2.1-t2i-turbo", **fields})) == []


def test_a_local_reference_image_that_exists_passes(tmp_path):
    ref = tmp_path / "ref.png"
    Image.new("RGB", (4096, 256)).save(ref)
    assert validate(GenerationRequest("a fox", model="wanx-v1", ref_img=str(ref))) == []
    assert validate(GenerationRequest("a fox", model="wanx-v1", ref_img=f"file://{ref}")) == []


def test_warnings_say_what_the_server_will_change():
    long = validate(GenerationRequest("a" * 801, model="wanx2.1-t2i-turbo", negative_prompt="b" * 501))
    assert long == ["prompt is 801 characters; wanx2.1-t2i-turbo keeps the first 800 and the server truncates the rest",
                    "negative_prompt is 501 characters; the server keeps the first 500"]
    assert validate(GenerationRequest("a" * 800, model="wanx2.0-t2i-turbo", negative_prompt="b" * 500)) == []
    no_ref = validate(GenerationRequest("a", model="wanx-v1", ref_mode="repaint"), names=NAMES)
    assert no_ref == ["ref_strength and --ref-mode have no effect without ref_img"]
    region = validate(GenerationRequest("a", model="wanx-v1"), region="singapore")
    assert region == ["wanx-v1 is documented for beijing only, not singapore; the service may refuse it"]
    region = validate(GenerationRequest("a", model="wanx2.1-t2i-plus"), region="frankfurt")
    assert region == ["wanx2.1-t2i-plus is documented for beijing, singapore, virginia only, not frankfurt;"
                      " the service may refuse it"]


# ---- the replay key: recordings made by earlier versions must still be found ---------------------------


def test_canonical_fills_each_server_default_under_its_wire_name():
    v2 = GenerationRequest("一只红狐狸", model="wanx2.1-t2i-turbo", seed=7)
    assert v2.canonical() == {"model": "wanx2.1-t2i-turbo", "n": 4, "prompt": "一只红狐狸", "prompt_extend": True,
                              "seed": 7, "size": "1024*1024", "watermark": False}
    v1 = GenerationRequest("fox", model="wanx-v1", ref_img="https://x/a.png")
    assert v1.canonical() == {"model": "wanx-v1", "n": 4, "prompt": "fox", "ref_img": "https://x/a.png",
                              "ref_mode": "repaint", "ref_strength": 0.5, "size": "1024*1024", "style": "<auto>"}
    styled = GenerationRequest("fox", model="wan2.1-t2i-turbo", n=2, size="1280*720", watermark=True, prompt_extend=False)
    assert styled.canonical() == {"model": "wanx2.1-t2i-turbo", "n": 2, "prompt": "fox", "prompt_extend": False,
                                  "size": "1280*720", "watermark": True}
    assert list(v1.canonical()) == sorted(v1.canonical())


def test_the_replay_key_is_the_sha256_of_the_compact_sorted_utf8_canonical_json():
    request = GenerationRequest("一只红狐狸", model="wanx2.1-t2i-turbo", seed=7)
    blob = ('{"model":"wanx2.1-t2i-turbo","n":4,"prompt":"一只红狐狸","prompt_extend":true,"seed":7,'
            '"size":"1024*1024","watermark":false}')
    assert request.key() == hashlib.sha256(blob.encode()).hexdigest()
    assert json.loads(blob) == request.canonical()


def test_a_summary_names_model_n_size_seed_and_a_short_prompt():
    short = GenerationRequest("a red fox", model="wanx-v1", n=2, seed=3)
    assert short.summary() == "wanx-v1, n=2, size=1024*1024, seed=3, prompt='a red fox'"
    assert GenerationRequest("a" * 40, model="wanx-v1").summary().endswith(f"prompt='{'a' * 40}'")
    long = GenerationRequest("b" * 41, model="wanx2.1-t2i-plus", size="1280*720")
    assert long.summary() == f"wanx2.1-t2i-plus, n=4, size=1280*720, seed=None, prompt='{'b' * 39}…'"
