"""`python -m wanx_nb.emulator [--port 8000] [--seed 0] [--time-scale 0.05]`: serve on 127.0.0.1."""

from __future__ import annotations

import argparse

from ._settings import EmulatorSettings
from .server import serve

__all__: list[str] = []


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m wanx_nb.emulator", description="Serve the DashScope text-to-image emulator on 127.0.0.1."
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-scale", type=float, default=0.05, help="factor on each model's typical task duration")
    args = parser.parse_args(argv)
    print(f"DashScope emulator: set DASHSCOPE_HTTP_BASE_URL=http://127.0.0.1:{args.port}/api/v1")
    serve(port=args.port, settings=EmulatorSettings(seed=args.seed, time_scale=args.time_scale))


if __name__ == "__main__":
    main()
