"""What `%config WanxMagics.<name> = value` accepts.

Each setting is checked when it is set, so a bad value is refused there, naming the setting, the
value and what is allowed (`%config` prints a TraitError on one line). Unchecked, `default_n = 9`
would be blamed later on `-n`, an option the cell never typed, and `preview_px = -5` would break the
display of an image already paid for. What depends on the model (a size V1 does not take, n above a
model's own limit) is still checked per cell, where the message names the setting it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from traitlets import TraitError

from ._params import canonical_size, parse_size
from ._render_options import PREVIEW_PX_RANGE

__all__ = ["DEFAULTED_NAMES", "checked_setting"]

# The setting a cell's request value came from when the cell did not give the option.
DEFAULTED_NAMES = {
    "model": "%config WanxMagics.default_model",
    "n": "%config WanxMagics.default_n",
    "size": "%config WanxMagics.default_size",
}


def checked_setting(name: str, value: Any) -> Any:
    """`value` as the setting `name` keeps it, or a TraitError saying what the setting allows."""
    check = _CHECKS.get(name)
    return value if check is None or value is None else check(value)


def _refuse(name: str, value: Any, allowed: str) -> TraitError:
    return TraitError(f"WanxMagics.{name}={value!r}: {allowed}")


def _model(value: str) -> str:
    from ._registry import get_model

    try:
        return get_model(value).name
    except KeyError as exc:
        raise _refuse("default_model", value, f"{exc.args[0]}; see %wanx models") from None


def _n(value: int) -> int:
    from ._registry import CATALOG

    most = max(spec.max_n for spec in CATALOG.values())
    if not 1 <= value <= most:
        raise _refuse("default_n", value, f"a whole number from 1 to {most} (each model's own limit applies per cell)")
    return value


def _size(value: str) -> str | None:
    from ._registry import CATALOG

    if not value.strip():
        return None  # "" means "the model's own", as None does
    if parse_size(value) is None:
        raise _refuse("default_size", value, "W*H in whole pixels, e.g. 1024*1024, or None for each model's own")
    size = str(canonical_size(value))
    # A size that some model takes: a cell on another model is refused naming this setting, and a grid
    # fits it to each model; a size that no model takes would only fail at the next run.
    if all(spec.sizing.problem(size) is not None for spec in CATALOG.values()):
        raise _refuse("default_size", value, "a size some model takes, e.g. 1024*1024 (%wanx models lists each "
                      "model's sizes), or None for each model's own")  # fmt: skip
    return size


def _preview_px(value: int) -> int:
    lo, hi = PREVIEW_PX_RANGE
    if not lo <= value <= hi:
        raise _refuse("preview_px", value, f"a whole number of pixels from {lo} to {hi}")
    return value


def _not_negative(name: str, meaning_of_zero: str) -> Callable[[float], float]:
    def check(value: float) -> float:
        if not value >= 0:  # also refuses NaN
            raise _refuse(name, value, f"a number of at least 0 (0: {meaning_of_zero})")
        return value

    return check


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "default_model": _model,
    "default_n": _n,
    "default_size": _size,
    "preview_px": _preview_px,
    "budget_yuan": _not_negative("budget_yuan", "no budget"),
    "wait_timeout": _not_negative("wait_timeout", "no limit"),
}
