"""What sets an image apart: the parameters that differ from its model's defaults, and sweep labels.

Captions (result cards, grid cells) list `changed_params`; a gallery of several results labels each
with `sweep_labels`, the parameters that vary across them (e.g. each style of a style sweep).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ._html_style import escape as _e
from ._request import GenerationRequest, excerpt

__all__ = ["CAPTION_PARAMS", "caption_value", "changed_params", "params_caption", "sweep_labels"]

# How each parameter reads in a caption, in the order captions list them.
CAPTION_PARAMS = (
    ("size", "size"),
    ("style", "style"),
    ("ref_img", "reference"),
    ("ref_strength", "strength"),
    ("ref_mode", "mode"),
    ("negative_prompt", "negative"),
    ("prompt_extend", "extend"),
    ("watermark", "watermark"),
    ("thinking_mode", "thinking"),
    ("enable_sequential", "sequence"),
)


def caption_value(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if name == "ref_img":
        text = str(value)
        return text.rstrip("/").rsplit("/", 1)[-1] or text  # the file name, not a long URL or path
    if name == "negative_prompt":
        text = str(value)
        return f'"{text}"' if len(text) <= 40 else f'"{text[:39]}…"'
    return str(value)


def changed_params(request: GenerationRequest) -> list[tuple[str, str]]:
    """(label, value) of every parameter that differs from the model's defaults, in caption order.

    Seed and n are not listed (captions show the seed of each image). Defaults are the server's, as
    `GenerationRequest.canonical()` fills them in: a request that sets a parameter to its default
    value lists nothing for it.
    """
    try:
        sent = request.canonical()
        # The same reference: ref_mode and ref_strength only have defaults when a reference is given.
        defaults = GenerationRequest(prompt=request.prompt, model=request.model, ref_img=request.ref_img).canonical()
    except KeyError:  # a model the registry does not know: everything given differs
        sent, defaults = request.given(), {}
    defaults.pop("ref_img", None)  # a reference always differs from none
    return [
        (label, caption_value(name, sent[name]))
        for name, label in CAPTION_PARAMS
        if name in sent and sent[name] != defaults.get(name)
    ]


def params_caption(request: GenerationRequest, *, skip: Iterable[str] = ()) -> str:
    """`changed_params` as one escaped line ("style <watercolor> · strength 0.7"), or ""."""
    skipped = set(skip)
    return " · ".join(f"{_e(label)} {_e(value)}" for label, value in changed_params(request) if label not in skipped)


_SWEEP_ORDER = ("model", "prompt", *(name for name, _ in CAPTION_PARAMS), "seed", "n")
_SWEEP_LABELS = {"model": "", "prompt": "", "seed": "seed", "n": "n", **dict(CAPTION_PARAMS)}


def _request_of(item: object) -> GenerationRequest | None:
    request = getattr(item, "request", None)
    return request if isinstance(request, GenerationRequest) else None


def sweep_labels(items: Sequence[object]) -> list[str]:
    """A label per item naming the parameters that vary across `items` ("style <watercolor>").

    Items are results (or errors that carry a `.request`). Parameters that are the same everywhere
    are left out; an item without a request gets "".
    """
    canon: list[dict[str, Any] | None] = []
    for item in items:
        request = _request_of(item)
        if request is None:
            canon.append(None)
            continue
        try:
            fields_ = request.canonical()
        except KeyError:
            fields_ = {"model": request.model, **request.given()}
        canon.append(fields_)
    known = [c for c in canon if c is not None]
    varying = [k for k in _SWEEP_ORDER if len({repr(c.get(k)) for c in known}) > 1]
    labels = []
    for c in canon:
        if c is None:
            labels.append("")
            continue
        parts = []
        for key in varying:
            value = c.get(key)
            if key == "prompt":
                parts.append(excerpt(" ".join(str(value).split()), 40))
            elif value is None:
                parts.append(f"{_SWEEP_LABELS[key]} default".strip())
            else:
                parts.append(f"{_SWEEP_LABELS[key]} {caption_value(key, value)}".strip())
        labels.append(" · ".join(parts))
    return labels
