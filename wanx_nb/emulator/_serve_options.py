"""The options of a served emulator, one set for `python -m wanx_nb.emulator` and `wanx-nb emulator`.

It imports nothing heavy (`wanx-nb` builds every subcommand's parser on each call): the settings
module, which brings Starlette, is imported only to make the settings.
"""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._settings import EmulatorSettings

__all__ = ["REGIONS", "add_serve_options", "serve_settings"]

# The regions an emulated host can play (2026 §2.2).
REGIONS = ("beijing", "singapore", "virginia", "frankfurt")


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=_port, default=8000, help="TCP port, 1-65535 (default: 8000)")
    parser.add_argument("--seed", type=int, default=0, help="drives server-chosen seeds and random faults (default: 0)")
    parser.add_argument(
        "--time-scale", type=_scale, default=0.05,
        help="task durations x this: 1 is real time, 0.05 is 20x faster (default: 0.05)",
    )
    parser.add_argument(
        "--region", choices=REGIONS, default="beijing", help="the region to play: which models exist, their limits (default: beijing)"
    )
    parser.add_argument(
        "--image-weight", choices=("light", "service"), default="light",
        help="images at the service's weight (about 2 MB a 1024x1024 PNG) or light placeholders (default: light)",
    )
    parser.add_argument(
        "--state", metavar="FILE", help="keep the tasks in this SQLite file, so a restarted server still knows them"
    )


def serve_settings(args: argparse.Namespace) -> EmulatorSettings:
    """The settings the options in `args` ask for."""
    from ._settings import EmulatorSettings

    return EmulatorSettings(seed=args.seed, time_scale=args.time_scale, region=args.region, state_path=args.state,
                            image_weight=args.image_weight)  # fmt: skip


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port; use a whole number from 1 to 65535")
    return int(text)


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not allowed; use a number >= 0, the fraction of the real task durations (0.05: 20x faster)"
        )
    return value
