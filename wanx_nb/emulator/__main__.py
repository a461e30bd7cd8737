"""`python -m wanx_nb.emulator [--port 8000] [--seed 0] [--time-scale 0.05] [--region beijing]
[--image-weight light] [--state FILE]`: serve on 127.0.0.1."""

from __future__ import annotations

import argparse
import math

from ._settings import REGIONS, EmulatorSettings
from .server import serve

__all__: list[str] = []


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m wanx_nb.emulator", description="Serve the DashScope text-to-image emulator on 127.0.0.1."
    )
    parser.add_argument("--port", type=_port, default=8000, help="TCP port, 1-65535 (default 8000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--time-scale", type=_scale, default=0.05, help="factor >= 0 on each model's typical task duration"
    )
    parser.add_argument(
        "--region", choices=REGIONS, default="beijing", help="the region to play: which models exist, their limits"
    )
    parser.add_argument(
        "--image-weight", choices=("light", "service"), default="light",
        help="images at the service's weight (about 2 MB a 1024x1024 PNG) or light placeholders (default light)",
    )
    parser.add_argument(
        "--state", metavar="FILE", help="keep the tasks in this SQLite file, so a restarted server still knows them"
    )
    args = parser.parse_args(argv)
    settings = EmulatorSettings(seed=args.seed, time_scale=args.time_scale, region=args.region, state_path=args.state,
                                 image_weight=args.image_weight)
    try:
        serve(port=args.port, settings=settings,
              on_ready=lambda url: print(f"DashScope emulator: set DASHSCOPE_HTTP_BASE_URL={url}", flush=True))
    except OSError as exc:  # the port is taken: said in one line, not a traceback
        parser.exit(1, f"error: {exc.strerror or exc}\n")


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is a whole number from 1 to 65535, not {text!r}")
    return int(text)


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"the time scale is a number >= 0 (0.05: 20x faster than real), not {text!r}")
    return value


if __name__ == "__main__":
    main()
