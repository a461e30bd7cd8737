"""`python -m wanx_nb.emulator [--port 8000] [--seed 0] [--time-scale 0.05] [--region beijing]
[--image-weight light] [--state FILE]`: serve on 127.0.0.1 (the options of `wanx-nb emulator`)."""

from __future__ import annotations

import argparse

from ._serve_options import add_serve_options, serve_settings
from .server import serve

__all__: list[str] = []


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m wanx_nb.emulator", description="Serve the DashScope text-to-image emulator on 127.0.0.1."
    )
    add_serve_options(parser)
    args = parser.parse_args(argv)
    try:
        serve(port=args.port, settings=serve_settings(args),
              on_ready=lambda url: print(f"DashScope emulator: set DASHSCOPE_HTTP_BASE_URL={url}", flush=True))
    except OSError as exc:  # the port is taken: said in one line, not a traceback
        parser.exit(1, f"error: {exc.strerror or exc}\n")


if __name__ == "__main__":
    main()
