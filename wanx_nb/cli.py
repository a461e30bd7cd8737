"""The `wanx-nb` command: generate, serve the emulator, list models, resume, export and re-run manifests."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cli_parser import _parser, request_from_args
from ._cli_text import counted, emulator_notice, terminal_safe
from ._constants import ENV_STORE, env_store
from ._exceptions import RunInterruptedError, ValidationError, WanxError
from ._params import OPTION_NAMES, namespace_params
from ._registry import CATALOG
from ._validation import validate

if TYPE_CHECKING:  # the session (httpx, the store) loads only for the commands that use it
    from ._session import Session

__all__ = ["main", "request_from_args"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (2: bad arguments, 1: refused or failed, 130: Ctrl-C,
    141: its output pipe was closed, 0: done)."""
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as exc:  # argparse has printed the usage and the error (or the help)
            return exc.code if isinstance(exc.code, int) else 2
        _preflight(args)
        code = _COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not as Python's warning at exit
        return code
    except BrokenPipeError:
        return _output_closed()
    except RunInterruptedError as exc:  # Ctrl-C while a run waits: what it canceled, what resume keeps
        _say(f"error: {exc.args[0]}", err=True)
        return 130
    except KeyboardInterrupt:
        _say("error: interrupted", err=True)
        return 130
    except (WanxError, _CommandError) as exc:
        _say(f"error: {exc}", err=True)
        return 1
    except OSError as exc:  # a folder or file the command needs (the store, an output) is unusable
        where = f" {exc.filename}" if exc.filename else ""
        _say(f"error: cannot use{where}: {exc.strerror or exc}", err=True)
        return 1


def _say(text: str, *, err: bool = False) -> None:
    """Print for a person at a terminal: a prompt's ESC sequences are shown, not obeyed."""
    print(terminal_safe(text), file=sys.stderr if err else sys.stdout)


def _output_closed() -> int:
    """The reader went away (`wanx-nb history | head -1`): stop quietly, as other commands do."""
    try:  # Python flushes stdout once more at exit, and would warn: point it at nothing
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is no file (captured): nothing is flushed at exit
        pass
    return 141  # 128 + SIGPIPE: what a shell reports for a command a closed pipe stopped


class _CommandError(Exception):
    """A command cannot run as asked (a path it cannot write, a manifest it cannot read)."""


def _preflight(args: argparse.Namespace) -> None:
    """Everything that can be checked before a request is sent, so no error comes after paying."""
    dry_run = getattr(args, "dry_run", False)  # writes nothing: no store, no output folder
    if args.command in ("generate", "rerun", "resume", "grid") and not dry_run:
        # The store takes the task id the moment a task is created: it must be usable before that.
        store = args.store or env_store()
        _check_writable_dir(Path(store), "--store" if args.store else ENV_STORE)
    if args.command == "generate":
        request = request_from_args(args)
        try:
            validate(request, names=OPTION_NAMES)
        except ValidationError as exc:
            raise _CommandError(f"{exc}\nnothing was sent") from None
        _check_writable_dir(Path(args.out), "-o/--out")
    elif args.command == "grid":
        if Path(args.out).is_dir():
            raise _CommandError(f"-o {args.out} is a folder; give the path of the PNG to write")
        if not dry_run:
            _check_writable_dir(Path(args.out).parent, "-o/--out's folder")
    elif args.command == "export":
        _check_writable_dir(Path(args.manifest).parent, "the manifest's folder")
        if Path(args.manifest).is_dir():
            raise _CommandError(f"{args.manifest} is a folder; give the path of the JSON file to write")
    elif args.command == "report":
        if not Path(args.notebook).is_file():
            raise _CommandError(f"--notebook {args.notebook}: no such notebook file")
        _check_writable_dir(Path(args.out), "--out")


def _check_writable_dir(folder: Path, what: str) -> None:
    """`folder` exists (or can be made) and is writable; otherwise a _CommandError naming `what`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _CommandError(f"{what} {str(folder)!r}: cannot create that folder ({exc.strerror or exc})") from None
    try:  # a file really made there: os.access says yes to root everywhere, /proc included
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".wanx-nb-probe-"):
            pass
    except OSError as exc:
        raise _CommandError(f"{what} {str(folder)!r}: cannot write a file there ({exc.strerror or exc})") from None


def _session(args: argparse.Namespace) -> Session:
    from ._session import Session

    return Session(store=args.store) if args.store else Session()


def _cmd_generate(args: argparse.Namespace) -> int:
    request = request_from_args(args)  # checked by _preflight, with the -o folder, before anything is sent
    out = Path(args.out)
    session = _session(args)
    run = session.start([request], reproducible=args.reproducible, reuse=args.reuse)
    (result,) = run.result()  # Ctrl-C: RunInterruptedError, said by main
    if isinstance(result, BaseException):
        from ._error_card import error_fields
        from ._exceptions import TaskUnfinishedError

        step = "" if isinstance(result, TaskUnfinishedError) else f"\nnext step: {error_fields(result)['next_step']}"
        _say(f"error: {result}{step}", err=True)  # an unfinished request's message names its resume
        return 1
    written = []
    # A sync call (sync-only models) has no task id: its request id names the files instead.
    ident = result.task_id or result.task.request_id or "sync"
    provenance = result.provenance()
    for im in result.images:
        stem = f"{result.model}_{ident[:8]}_{im.index}"
        record = provenance.for_image(im.index).to_dict()  # the same record as the PNG's chunk
        if im.path is not None:
            shutil.copyfile(im.path, out / f"{stem}.png")
            written.append(out / f"{stem}.png")
        (out / f"{stem}.json").write_text(json.dumps(record, ensure_ascii=False, indent=2))
    billed = f"billed {result.billed_images}, saved {result.saved_images}" if result.saved_images != result.billed_images else f"{result.saved_images}/{len(result.images)} images"
    _say(f"{result.model}: {billed}, ¥{result.cost_yuan:.2f}, "
         + (f"task {result.task_id}" if result.task_id else f"sync call, request {result.task.request_id}"))
    for im in result.images:
        if im.path:
            _say(f"  seed {im.seed}  {im.size}  actual prompt: {im.actual_prompt or im.orig_prompt or request.prompt}")
        elif im.billed:
            _say(f"  seed {im.seed}  not saved yet: {im.download_error}")
        else:
            _say(f"  seed {im.seed}  failed: {im.code}: {im.message}")
    for warning in result.warnings:
        _say(f"  warning: {warning}")
    records = "its JSON record" if len(written) == 1 else "their JSON records"
    _say(f"wrote {counted(len(written), 'image')} and {records} to {out}/ (store: {session.store.root}/)")
    if result.from_emulator:
        _say(emulator_notice())
    return 0 if result.saved_images else 1


def _cmd_grid(args: argparse.Namespace) -> int:
    """State the plan and what it adapts before anything is sent; unless --dry-run, run the grid and
    write its PNG and manifest (a dry run writes nothing)."""
    from .comparison import Grid, grid

    on_axis = any(a and a.partition("=")[0].strip() in ("prompt", "prompts") for a in (args.x, args.y, args.z))
    if on_axis and args.prompt:
        raise _CommandError("the prompts are given twice: as arguments and on a prompt axis; give them in one place")
    if not on_axis and not args.prompt:
        raise _CommandError("no prompt: give it as an argument, or several on an axis (--x 'prompt=a fox|a cat')")
    prompts = args.prompt if len(args.prompt) != 1 else args.prompt[0]  # none: a prompt axis holds them
    png = _grid_png(args.out)

    def state_plan(planned: Grid) -> None:  # before anything is sent
        _say(("dry run, nothing sent: " if args.dry_run else "plan: ") + str(planned.plan))
        if planned.notes:  # what the notebook shows under the grid: adapted sizes, values a model drops
            _say("\n".join(["notes:", *(f"  - {note}" for note in planned.notes)]))

    built = grid(prompts, x=args.x, y=args.y, z=args.z, reuse=args.reuse, session=_session(args), display=False,
                 dry_run=args.dry_run, on_plan=state_plan, **namespace_params(args))  # fmt: skip
    if args.dry_run:
        there = " and ".join(str(p) for p in (png, png.with_suffix(".json")) if p.exists())
        replaced = f" (a run replaces the {there} there)" if there else ""
        _say(f"would write {png} and {png.with_suffix('.json')}{replaced}")
        if "emulator" in built.backends:
            _say(emulator_notice())
        return 0
    path = built.save(png, cell_px=args.cell_px)
    failed = [c for c in built.cells if c.error is not None]
    _say(f"{counted(len(built.cells), 'cell')}, {len(failed)} failed, billed ¥{built.paid_yuan:.2f}")
    if built.reused_cost_text():  # what earlier runs were billed for the cells shown from the store
        _say(built.reused_cost_text())
    if built.interrupted:
        _say(f"interrupted: {built.interrupted}", err=True)
    _say(f"wrote {path} and {path.with_suffix('.json')}")
    if "emulator" in built.backends:  # by its results: a served emulator answers at a base URL too
        _say(emulator_notice())
    return 130 if built.interrupted else 1 if failed else 0


def _grid_png(out: str) -> Path:
    """The PNG `Grid.save(out)` writes: `out`, with .png added unless it ends so."""
    path = Path(out)
    return path if path.suffix.lower() == ".png" else path.with_name(path.name + ".png")


def _cmd_emulator(args: argparse.Namespace) -> int:
    from .emulator import serve
    from .emulator._serve_options import serve_settings

    def ready(base_url: str) -> None:
        print(f"wanx_nb emulator on {base_url} (Ctrl-C stops it)")
        print(f"  use it: export DASHSCOPE_HTTP_BASE_URL={base_url} DASHSCOPE_API_KEY=sk-emulator", flush=True)

    try:
        serve(port=args.port, settings=serve_settings(args), on_ready=ready)
    except OSError as exc:  # the port is taken
        raise _CommandError(exc.strerror or str(exc)) from None
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from ._tables_html import limits_text, protocol_text

    print(f"{'model':20} {'status':7} {'call':5} {'family':14} {'¥/image':>7} {'limit':>6} {'conc':>4}  regions; sizes")
    for spec in CATALOG.values():
        call = protocol_text(spec).split(" ")[0]
        limit = limits_text(spec).split(" ")[0]
        print(
            f"{spec.name:20} {spec.status:7} {call:5} {spec.family:14} {spec.price_yuan:7.2f} {limit:>6} "
            f"{spec.concurrency:4d}  {', '.join(spec.regions)}; {spec.size_rule()}"
        )
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    report = _session(args).resume()
    for result in report.recovered:
        billed = counted(result.billed_images, "billed image")
        _say(f"recovered task {result.task_id}: {result.saved_images} of {billed} saved")
    for error in report.unfinished + report.ended:
        _say(f"  {error}")
    for entry in report.never_sent:  # what to run again
        _say(f"  never sent: {entry.given.summary()}")
    _say(report.text())
    return 1 if report.unfinished else 0


def _cmd_export(args: argparse.Namespace) -> int:
    manifest = _session(args).store.manifest()
    target = Path(args.manifest)
    partial_file = target.with_name(f".{target.name}.partial")
    try:  # whole or not at all: Ctrl-C while writing never leaves half a manifest
        partial_file.write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
        partial_file.replace(target)
    except OSError as exc:
        raise _CommandError(f"cannot write {args.manifest}: {exc.strerror or exc}") from None
    finally:
        partial_file.unlink(missing_ok=True)
    _say(f"wrote {counted(len(manifest['generations']), 'generation')} to {args.manifest}")
    return 0


def _cmd_rerun(args: argparse.Namespace) -> int:
    from .rerun import rerun_manifest

    manifest = _read_manifest(args.manifest)  # every generation checked whole before any is sent
    report = rerun_manifest(manifest, session=_session(args))
    _say(report.text())
    return 0 if report.all_same else 1


def _read_manifest(path: str) -> dict[str, Any]:
    """A manifest with all that re-running and comparing each generation needs; a _CommandError otherwise."""
    from .rerun import check_manifest

    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise _CommandError(f"cannot read the manifest {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _CommandError(f"the manifest {path} is not JSON ({exc}); write one with `wanx-nb export`") from None
    try:
        check_manifest(manifest)
    except ValueError as exc:
        comma = "," if str(exc).startswith("generation") else ""  # "the manifest m.json, generation 2: ..."
        raise _CommandError(f"the manifest {path}{comma} {exc}\nnothing was sent; `wanx-nb export` writes one") from None
    assert isinstance(manifest, dict)  # check_manifest made sure
    return manifest


def _cmd_history(args: argparse.Namespace) -> int:
    from ._history import past_the_end
    from .rendering import history_mimebundle

    store = _session(args).store
    filters = {"model": args.model, "text": args.text, "since": args.since, "until": args.until}
    try:
        rows = store.history(**filters, limit=args.limit, offset=(args.page - 1) * args.limit)
        if not rows and args.page > 1 and (matching := store.history_count(**filters)):
            raise _CommandError(past_the_end(args.page, args.limit, matching))
    except KeyError as exc:  # unknown model
        raise _CommandError(f"--model: {exc.args[0]}") from None
    except ValueError as exc:  # a --since/--until that is not ISO 8601
        raise _CommandError(f"--since/--until take an ISO 8601 time such as 2025-01-31T08:00 ({exc})") from None
    _say(history_mimebundle(rows)[0]["text/plain"])
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from .rendering import result_text

    store = _session(args).store
    result = store.get(args.task_id)
    if result is None:
        raise _CommandError(f"no saved result for task {args.task_id!r} in {store.root}; list them with `wanx-nb history`")
    _say(result_text(result))
    for im in result.images:
        where = im.path or "(not saved)"
        _say(f"  image {im.index + 1}: seed {im.seed}  {im.size or ''}  {where}")
        if im.ok:
            _say(f"    actual prompt: {im.actual_prompt or im.orig_prompt or result.request.prompt}")
    return 0


def _cmd_cost(args: argparse.Namespace) -> int:
    store = _session(args).store
    images, yuan = store.total_cost()
    made = "" if store.root.exists() else " (there is no store there yet)"
    _say(f"store {store.root}: ¥{yuan:.2f} for {counted(images, 'image')}{made}")
    _say("at list prices; emulator and replayed results cost nothing on the real service")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    source = Path(args.notebook)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        nb = nbformat.read(source, as_version=4)
        nbformat.validate(nb)
    except OSError:
        raise  # main names the file
    except Exception as exc:  # nbformat raises many kinds (not JSON, schema, type) for what is no notebook
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _CommandError(f"--notebook {source}: not a Jupyter notebook ({first}); nothing was run") from None
    # The notebook runs with the report directory as its working directory, so what it saves lands there.
    NotebookClient(nb, timeout=args.timeout, kernel_name="python3", resources={"metadata": {"path": str(out)}}).execute()
    html, _ = HTMLExporter().from_notebook_node(nb)
    target = out / (source.stem.split("_", 1)[-1] + ".html")
    target.write_text(html, encoding="utf-8")
    _say(f"executed {source} -> {target}")
    for extra in sorted(out.glob("*.png")):
        _say(f"  also wrote {extra}")
    return 0


def _cmd_store(args: argparse.Namespace) -> int:
    from ._exceptions import StoreError
    from ._store import Store

    where = args.dir or args.store or env_store()
    if not Path(where).exists():  # a typo'd path: checking or rebuilding would make an empty store there
        _say(f"error: there is no store at {str(where)!r}; nothing to {args.action}", err=True)
        return 1
    store = Store(where)
    if args.action == "rebuild":
        _say(store.rebuild().text())
        return 0
    report = store.integrity()
    _say(report.text())
    if report.quick_check == "ok":
        try:
            store.check()  # writable and enough free space, as before a paid run
        except StoreError as exc:
            _say(f"error: {exc}", err=True)
            return 1
    return 0 if report.ok else 1


_COMMANDS = {
    "grid": _cmd_grid,
    "store": _cmd_store,
    "report": _cmd_report,
    "generate": _cmd_generate,
    "emulator": _cmd_emulator,
    "models": _cmd_models,
    "resume": _cmd_resume,
    "export": _cmd_export,
    "rerun": _cmd_rerun,
    "history": _cmd_history,
    "show": _cmd_show,
    "cost": _cmd_cost,
}

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
