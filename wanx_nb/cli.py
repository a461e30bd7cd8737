"""The `wanx-nb` command: generate, serve the emulator, list models, resume, export and re-run manifests."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._exceptions import ConfigurationError, WanxError
from ._registry import MODELS
from ._request import DEFAULT_MODEL, GenerationRequest

__all__ = ["main"]

EMULATOR_NOTICE = "note: made by the offline emulator (no DASHSCOPE_API_KEY set): placeholder images, not model output"


def _request_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", default=DEFAULT_MODEL, help=f"model id (default {DEFAULT_MODEL})")
    p.add_argument("-n", type=int, default=1, help="images per task, 1-4 (default 1; the API's own default is 4)")
    p.add_argument("--size", help="W*H, e.g. 1024*768")
    p.add_argument("--seed", type=int, help="seed of the first image (default: chosen and recorded)")
    p.add_argument("--negative", dest="negative_prompt", help="negative prompt")
    p.add_argument("--extend", dest="prompt_extend", action="store_true", default=None, help="V2: prompt rewriting on")
    p.add_argument("--no-extend", dest="prompt_extend", action="store_false", help="V2: prompt rewriting off")
    p.add_argument("--watermark", action="store_true", default=None, help="V2: draw the AI-generated mark")
    p.add_argument("--style", help="V1: one of the ten styles, e.g. '<watercolor>'")
    p.add_argument("--ref", dest="ref_img", help="V1: reference image (local path or URL)")
    p.add_argument("--ref-strength", type=float, help="V1: 0.0-1.0")
    p.add_argument("--ref-mode", choices=["repaint", "refonly"], help="V1: follow content or style")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wanx-nb", description="Tongyi Wanxiang text-to-image from the shell.")
    parser.add_argument("--store", help="store directory (default $WANX_NB_STORE or ./wanx_store)")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate images and write them with a JSON record each")
    gen.add_argument("prompt")
    _request_args(gen)
    gen.add_argument("-o", "--out", default="wanx_output", help="output directory (default ./wanx_output)")
    gen.add_argument("--reproducible", action="store_true", help="no prompt rewriting (or re-send a recorded one)")

    emu = sub.add_parser("emulator", help="serve the offline DashScope emulator on 127.0.0.1")
    emu.add_argument("--port", type=int, default=8000)
    emu.add_argument("--time-scale", type=float, default=0.05, help="task durations x this (1.0 = realistic)")

    sub.add_parser("models", help="list the models, prices and limits")
    sub.add_parser("resume", help="recover tasks submitted but never saved (within 24 h)")

    exp = sub.add_parser("export", help="write a manifest of the store's generations")
    exp.add_argument("manifest", help="path of the JSON manifest to write")

    rep = sub.add_parser("report", help="execute a notebook headless and write it as HTML (default: the comparison)")
    rep.add_argument("--notebook", default="notebooks/02_model_comparison.ipynb")
    rep.add_argument("--out", default="report", help="directory for the HTML and whatever the notebook saves")
    rep.add_argument("--timeout", type=int, default=600, help="seconds per cell")

    store = sub.add_parser("store", help="check the store, or rebuild its index from the images' provenance")
    store.add_argument("action", choices=["check", "rebuild"])
    store.add_argument("dir", nargs="?", help="store directory (default: --store, $WANX_NB_STORE or ./wanx_store)")

    rerun = sub.add_parser("rerun", help="run a manifest's generations again and report which images differ")
    rerun.add_argument("manifest")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except WanxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _session(args: argparse.Namespace) -> Any:
    from ._session import Session

    return Session(store=args.store) if args.store else Session()


def _cmd_generate(args: argparse.Namespace) -> int:
    from ._exceptions import RunInterruptedError

    fields = ("model", "n", "size", "seed", "negative_prompt", "prompt_extend", "watermark", "style", "ref_img",
              "ref_strength", "ref_mode")
    request = GenerationRequest(args.prompt, **{f: getattr(args, f) for f in fields if getattr(args, f) is not None})
    session = _session(args)
    session.prepare(request)  # the request's own errors first, before anything is created
    out = _writable_dir(Path(args.out))  # checked before anything is paid for
    run = session.start([request], reproducible=args.reproducible)
    try:
        (result,) = run.result()
    except RunInterruptedError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 130
    if isinstance(result, BaseException):
        print(f"error: {result}", file=sys.stderr)
        return 1
    written = []
    for im in result.images:
        stem = f"{result.model}_{result.task_id[:8]}_{im.index}"
        record = {**result.metadata(), "image": im.metadata()}
        record.pop("images")
        if im.path is not None:
            shutil.copyfile(im.path, out / f"{stem}.png")
            written.append(out / f"{stem}.png")
        (out / f"{stem}.json").write_text(json.dumps(record, ensure_ascii=False, indent=2))
    billed = f"billed {result.billed_images}, saved {result.saved_images}" if result.saved_images != result.billed_images else f"{result.saved_images}/{len(result.images)} images"
    print(f"{result.model}: {billed}, ¥{result.cost_yuan:.2f}, task {result.task_id}")
    for im in result.images:
        if im.path:
            print(f"  seed {im.seed}  {im.size}  actual prompt: {im.actual_prompt or im.orig_prompt or request.prompt}")
        elif im.billed:
            print(f"  seed {im.seed}  not saved yet: {im.download_error}")
        else:
            print(f"  seed {im.seed}  failed: {im.code}: {im.message}")
    for warning in result.warnings:
        print(f"  warning: {warning}")
    print(f"wrote {len(written)} image(s) and their JSON records to {out}/ (store: {session.store.root}/)")
    if result.from_emulator:
        print(EMULATOR_NOTICE)
    return 0 if result.saved_images else 1


def _writable_dir(path: Path) -> Path:
    """`path`, created if needed; a clear error (before anything is sent) when it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".wanx_nb_probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigurationError(f"-o {str(path)!r}: cannot write there ({exc.strerror or exc}); nothing was sent") from None
    return path


def _cmd_emulator(args: argparse.Namespace) -> int:
    from .emulator import EmulatorSettings, serve

    print(f"wanx_nb emulator on http://127.0.0.1:{args.port}/api/v1 (Ctrl-C stops it)")
    print(f"  use it: export DASHSCOPE_HTTP_BASE_URL=http://127.0.0.1:{args.port}/api/v1 DASHSCOPE_API_KEY=sk-emulator")
    serve(port=args.port, settings=EmulatorSettings(time_scale=args.time_scale))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    print(f"{'model':22} {'family':6} {'¥/image':>7} {'rps':>4} {'conc':>4}  sizes")
    for spec in MODELS.values():
        print(f"{spec.name:22} {spec.family:6} {spec.price_yuan:7.2f} {spec.submit_rps:4g} {spec.concurrency:4d}  {spec.size_rule()}")
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    report = _session(args).resume()
    for result in report.recovered:
        print(f"recovered task {result.task_id}: {result.saved_images} of {result.billed_images} billed image(s) saved")
    for error in report.unfinished + report.ended:
        print(f"  {error}")
    print(report.text())
    return 1 if report.unfinished else 0


def _cmd_export(args: argparse.Namespace) -> int:
    manifest = _session(args).store.manifest()
    Path(args.manifest).write_text(json.dumps(manifest, ensure_ascii=False, indent=2))
    print(f"wrote {len(manifest['generations'])} generation(s) to {args.manifest}")
    return 0


def _cmd_rerun(args: argparse.Namespace) -> int:
    from .rerun import rerun_manifest

    report = rerun_manifest(json.loads(Path(args.manifest).read_text()), session=_session(args))
    print(report.text())
    return 0 if report.all_same else 1


def _cmd_store(args: argparse.Namespace) -> int:
    import os

    from ._constants import ENV_STORE
    from ._exceptions import StoreError
    from ._store import Store

    store = Store(args.dir or args.store or os.environ.get(ENV_STORE) or "wanx_store")
    if args.action == "rebuild":
        print(store.rebuild().text())
        return 0
    report = store.integrity()
    print(report.text())
    if report.quick_check == "ok":
        try:
            store.check()  # writable and enough free space, as before a paid run
        except StoreError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0 if report.ok else 1


def _cmd_report(args: argparse.Namespace) -> int:
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    source = Path(args.notebook)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(source, as_version=4)
    # The notebook runs with the report directory as its working directory, so what it saves lands there.
    NotebookClient(nb, timeout=args.timeout, kernel_name="python3", resources={"metadata": {"path": str(out)}}).execute()
    html, _ = HTMLExporter().from_notebook_node(nb)
    target = out / (source.stem.split("_", 1)[-1] + ".html")
    target.write_text(html, encoding="utf-8")
    print(f"executed {source} -> {target}")
    for extra in sorted(out.glob("*.png")):
        print(f"  also wrote {extra}")
    return 0


_COMMANDS = {
    "report": _cmd_report,
    "generate": _cmd_generate,
    "emulator": _cmd_emulator,
    "models": _cmd_models,
    "resume": _cmd_resume,
    "export": _cmd_export,
    "rerun": _cmd_rerun,
    "store": _cmd_store,
}

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
