"""Check a GenerationRequest against its model's rules before anything is sent.

Pure: no I/O except reading a local reference image's header (is it an image the service reads?).
`validate()` collects every problem into one ValidationError, and returns the warnings (truncated
prompts, no-op parameters) for the caller to show. Problems name each parameter as the caller's
surface spells it: the API field for Python (`prompt_extend`), the option for the magic and the CLI
(`--extend`, from `_params.OPTION_NAMES`).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from ._exceptions import Problem, ValidationError
from ._params import PARAMS, parse_size
from ._registry import CATALOG, MODELS, V1_STYLES, ModelSpec, get_model
from ._request import MAX_SEED, PARAMETERS, GenerationRequest

__all__ = ["parse_size", "validate"]

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


class _Problems(list[Problem]):
    """Problems that name each field as the caller spells it."""

    def __init__(self, names: Mapping[str, str]) -> None:
        super().__init__()
        self.names = names

    def name(self, field: str) -> str:
        return self.names.get(field, field)

    def add(self, field: str, value: Any, allowed: str) -> None:
        self.append(Problem(self.name(field), value, allowed))


def validate(
    request: GenerationRequest, *, region: str = "beijing", names: Mapping[str, str] | None = None
) -> list[str]:
    """Raise ValidationError listing every problem; return warnings for what the server will change.

    `names` maps a field to what the user typed for it (`{"prompt_extend": "--extend"}`); messages use it.
    """
    problems = _Problems(names or {})
    try:
        spec = get_model(request.model)
    except (KeyError, TypeError) as exc:
        problems.add("model", request.model, _unknown_model(exc))
        raise ValidationError(str(request.model), problems) from None

    warnings: list[str] = []
    given = request.given()

    for name, value in given.items():
        if name not in spec.params:
            takes = ", ".join(problems.name(p) for p in PARAMETERS if p in spec.params)
            family = f"{spec.name} ({spec.family})"
            # Name the families of the same tier first (a V1 user is told "V2", not every 2026 family).
            tier = MODELS if spec.name in MODELS else CATALOG
            owners = sorted({m.family for m in tier.values() if name in m.params}) or sorted(
                {m.family for m in CATALOG.values() if name in m.params}  # wan2.7's own, on a legacy model
            )
            where = f"; it is a {'/'.join(owners)} parameter" if owners else ""
            problems.add(name, value, f"{family} does not take {problems.name(name)}{where}. It takes: {takes}")

    _check_prompt(request, spec, problems, warnings)
    if request.size is not None:
        _check_size(request.size, spec, problems)
    n_ok = request.n is None or _is_int_in(request.n, 1, spec.max_n_for(request.enable_sequential is True))
    if not n_ok:
        problems.add("n", request.n, _n_allowed(spec, request, problems))
    if request.seed is not None:
        if not _is_int_in(request.seed, 0, MAX_SEED):
            problems.add("seed", request.seed, f"an integer from 0 to {MAX_SEED}")
        elif n_ok and request.seed + request.effective_n - 1 > MAX_SEED:
            # Image i uses seed + i: every one of them must stay a valid seed.
            n = request.effective_n
            problems.add(
                "seed", request.seed,
                f"with {problems.name('n')} {n}, image i uses seed + i, so the seed must be at most "
                f"{MAX_SEED - n + 1} (the largest seed is {MAX_SEED})",
            )  # fmt: skip
    for flag in _FLAGS:
        value = given.get(flag)
        if value is not None and flag in spec.params and not isinstance(value, bool):
            problems.add(flag, value, "true or false")
    if spec.is_v1:
        _check_v1(request, problems, warnings)
    if region not in spec.regions and spec.status == "legacy":
        # The legacy models' region lists come from docs that disagree: the server has the last word.
        warnings.append(
            f"{spec.name} is documented for {', '.join(spec.regions)} only, not {region}; the service may refuse it"
        )
    elif region not in spec.regions:
        # 2026 §2.2 (price list, limits table and a live probe agree): the service answers "Model not
        # exist" where a region does not serve the model, so it is refused before anything is sent.
        where = ", ".join(spec.regions)
        served = sorted(m.name for m in CATALOG.values() if region in m.regions)
        problems.add(
            "model", spec.name,
            f"a model the {region} region serves: {spec.name} is offered in {where} only"
            + (f"; in {region} use one of {', '.join(served)}" if served else ""),
        )  # fmt: skip
    if problems:
        raise ValidationError(spec.name, problems)
    return warnings


# The on/off parameters, from the one parameter table (a new toggle is checked without a change here).
_FLAGS = tuple(p.name for p in PARAMS if p.widget == "toggle")


def _n_allowed(spec: ModelSpec, request: GenerationRequest, problems: _Problems) -> str:
    """What `n` may be for `spec`, with `enable_sequential` as the request sets it (named as typed)."""
    if spec.max_n == 1:
        return f"1 ({spec.name} makes one image per call)"
    most = spec.max_n_for(True)
    if most == spec.max_n:
        return f"an integer from 1 to {spec.max_n}"
    # wan2.7: up to 12 with enable_sequential is third-party documented only (2026 §13.7). Accepted:
    # accept what any source accepts, let the server have the last word.
    sequential = problems.name("enable_sequential")
    turned_on = sequential if sequential.startswith("-") else f"{sequential}=True"
    if request.enable_sequential is True:
        return f"an integer from 1 to {most} with {turned_on} ({spec.name})"
    return f"1-{spec.max_n} for {spec.name}, or up to {most} with {turned_on}"


def _check_prompt(request: GenerationRequest, spec: ModelSpec, problems: _Problems, warnings: list[str]) -> None:
    if not isinstance(request.prompt, str) or not _visible(request.prompt):
        problems.add("prompt", request.prompt, "a non-empty text (Chinese or English)")
    elif (broken := _unencodable(request.prompt)) is not None:
        problems.add("prompt", request.prompt, broken)
    elif len(request.prompt) > spec.prompt_limit:
        warnings.append(
            f"prompt is {len(request.prompt)} characters; {spec.name} keeps the first {spec.prompt_limit} "
            "and the server truncates the rest"
        )
    elif spec.prompt_limit_low is not None and len(request.prompt) > spec.prompt_limit_low:
        warnings.append(
            f"prompt is {len(request.prompt)} characters; the docs give {spec.name} a limit of {spec.prompt_limit}, "
            f"but some say it keeps only the first {spec.prompt_limit_low}: the server may cut the rest silently"
        )
    neg = request.negative_prompt
    if neg is not None:
        if not isinstance(neg, str):
            problems.add("negative_prompt", neg, "a text")
        elif (broken := _unencodable(neg)) is not None:
            problems.add("negative_prompt", neg, broken)
        elif len(neg) > spec.negative_prompt_limit:
            warnings.append(
                f"negative_prompt is {len(neg)} characters; the server keeps the first {spec.negative_prompt_limit}"
            )


def _visible(text: str) -> bool:
    """Whether `text` has a character that shows: not only spaces, zero-width or control characters
    ("\u200b" is not whitespace to str.strip, and a prompt of it alone describes nothing)."""
    return any(not c.isspace() and unicodedata.category(c) not in ("Cc", "Cf") for c in text)  # Zs: isspace


def _unencodable(text: str) -> str | None:
    """Why `text` cannot be sent as UTF-8 (the request body's encoding), or None. Python reads a byte of a
    command line or file that is not UTF-8 as a lone surrogate ("\\udcff" for 0xff)."""
    for position, char in enumerate(text, 1):
        if "\ud800" <= char <= "\udfff":
            byte = f" (the byte 0x{ord(char) - 0xDC00:02x}, not UTF-8)" if "\udc80" <= char <= "\udcff" else ""
            return f"text in UTF-8: character {position} is {char!r}{byte}; was it written in another encoding?"
    return None


def _check_size(size: Any, spec: ModelSpec, problems: _Problems) -> None:
    """The registry's size rule (`SizeRule`): fixed sizes, tiers ("2K"), per-side and area ranges."""
    rule = spec.sizing
    if isinstance(size, str) and size.strip().upper() in rule.tier_names:
        return
    parsed = parse_size(size)
    if parsed is None:
        problems.add(
            "size", size, f"a size written W*H in whole pixels above 0, e.g. {spec.default_size}; {spec.size_rule()}"
        )
        return
    if rule.fixed and not rule.free:
        if f"{parsed[0]}*{parsed[1]}" not in rule.fixed:
            problems.add("size", size, f"{spec.name} supports only {', '.join(rule.fixed)}")
    elif rule.problem(f"{parsed[0]}*{parsed[1]}") is not None:
        problems.add("size", size, spec.size_rule())


def _check_v1(request: GenerationRequest, problems: _Problems, warnings: list[str]) -> None:
    if request.style is not None and request.style not in V1_STYLES:
        problems.add("style", request.style, "one of " + ", ".join(V1_STYLES))
    if request.ref_strength is not None:
        ok = isinstance(request.ref_strength, (int, float)) and not isinstance(request.ref_strength, bool)
        if not ok or not 0.0 <= float(request.ref_strength) <= 1.0:
            problems.add("ref_strength", request.ref_strength, "a number from 0.0 to 1.0")
    if request.ref_mode is not None and request.ref_mode not in ("repaint", "refonly"):
        problems.add("ref_mode", request.ref_mode, "'repaint' (follow the content) or 'refonly' (follow the style)")
    ref = request.ref_img
    if ref is not None:
        if not isinstance(ref, str) or not ref:
            problems.add("ref_img", ref, "an http(s) URL, an oss:// URL or a local image path")
        elif ref.startswith(("http://", "https://", "oss://")):
            if _CJK.search(ref):
                problems.add("ref_img", ref, "a URL without Chinese characters (the service rejects them)")
        elif not os.path.isfile(ref.removeprefix("file://")):
            problems.add("ref_img", ref, "an existing local file, an http(s) URL or an oss:// URL")
        else:
            _check_local_ref(ref, problems, warnings)
    elif request.ref_strength is not None or request.ref_mode is not None:
        strength, mode, ref = (problems.name(f) for f in ("ref_strength", "ref_mode", "ref_img"))
        warnings.append(f"{strength} and {mode} have no effect without {ref}")


# The reference image's documented limits (t2i protocol §2, input.ref_img). Only a file that is no image
# at all is refused before the upload; beyond the documented formats and sizes the service has the last
# word (its refusal is not billed), so those are warnings.
_REF_FORMATS = {"JPEG", "PNG", "BMP", "TIFF", "WEBP"}
_REF_MAX_BYTES = 10 * 1024 * 1024
_REF_SIDES = (256, 4096)


def _check_local_ref(ref: str, problems: _Problems, warnings: list[str]) -> None:
    from PIL import Image, UnidentifiedImageError

    path = ref.removeprefix("file://")
    try:
        with Image.open(path) as img:  # reads the header only
            kind, (width, height) = img.format, img.size
    except (UnidentifiedImageError, OSError, ValueError):
        problems.add("ref_img", ref, "a JPEG, PNG, BMP, TIFF or WebP image (this file is not an image)")
        return
    outside = []
    if kind not in _REF_FORMATS:
        outside.append(f"is a {kind} image (documented: JPEG, PNG, BMP, TIFF, WebP)")
    if os.path.getsize(path) > _REF_MAX_BYTES:
        outside.append("is over the documented 10 MB")
    lo, hi = _REF_SIDES
    if not (lo <= width <= hi and lo <= height <= hi):
        outside.append(f"is {width}x{height} px (documented: {lo} to {hi} px per side)")
    if outside:
        warnings.append(f"the reference image {' and '.join(outside)}: the service may refuse it (not billed)")


def _is_int_in(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _unknown_model(exc: Exception) -> str:
    if not isinstance(exc, KeyError):
        return f"a model id; use one of {', '.join(CATALOG)}"
    known = str(exc.args[0]).split(" Known models:")[0].replace("unknown model", "not a known model").rstrip(".")
    name, _, hint = known.partition("; ")  # "...; did you mean 'x'?", when a name is close
    return f"{name}{f' ({hint})' if hint else ''}; use one of {', '.join(CATALOG)}"
