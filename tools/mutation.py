"""Mutation testing of the pure core with mutmut, one group of modules at a time (`make mutation`).

Each group pairs core modules with the test files written for them, so a mutant of `_png` runs the store
tests and not the whole suite; inside a group mutmut narrows further to the tests that called the mutated
function. A group runs in its own copy of the tree (build/mutation/<group>/), so the checkout stays clean
and a run that is stopped resumes where it was (mutmut keeps each verdict in mutants/*.meta).

    python tools/mutation.py                    # every group, then the report
    python tools/mutation.py store session      # some groups
    python tools/mutation.py --report-only      # rewrite the report from what has run

The report (bench/mutation-report.md) gives the score per module and lists every survivor with its diff;
bench/mutation-equivalent.md explains the survivors judged equivalent (they count as killed in no score).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"
REPORT = ROOT / "bench" / "mutation-report.md"
EQUIVALENT = ROOT / "bench" / "mutation-equivalent.md"

# group -> (modules mutated, tests run against them). `_protocol`, `_scheduler` and `_backoff` come last:
# they change most often, and a changed function's verdicts are recomputed anyway.
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "validation": (["_validation", "_request"],
                   ["test_validation", "test_request", "test_params", "test_regressions", "test_regressions_core"]),
    # The store and the session are used by every surface: a mutant there counts as killed when any test
    # of a surface that reads or writes through them notices. Left out: the fault matrix (too slow per
    # mutant), tests that run the package in a child process, and the magics' and comparison's tests (mutmut's stats
    # collection fails under them).
    "store": (["_png", "_journal", "_store", "_store_db", "_store_queries", "_store_read",
               "_store_repair"],
              ["test_store", "test_store_faults", "test_journal", "test_errors", "test_regressions",
               "test_regressions_store", "test_store_repair", "test_store_read", "test_store_queries",
               "test_store_writes", "test_store_db", "test_png", "test_provenance", "test_session", "test_run",
               "test_rerun", "test_result_bytes", "test_run_locks", "test_store_hardening", "test_paid_paths"]),
    "session": (["_session", "_resume", "_run"], ["test_session", "test_run", "test_regressions", "test_errors", "test_run_locks",
                                                  "test_paid_paths", "test_catalog_2026"]),
    "protocol": (["_protocol", "_protocol_list", "_protocol_upload"], ["test_protocol", "test_regressions", "test_regressions_protocol", "test_client_wire",
                                 "test_client_emulator", "test_client_downloads"]),
    "scheduler": (["_scheduler"], ["test_scheduler", "test_regressions", "test_regressions_protocol",
                                   "test_client_emulator"]),
    "backoff": (["_backoff"], ["test_backoff", "test_client_wire", "test_regressions"]),
}

# The whole run is about 5000 mutants, ~3 s each on a shared 2-core machine: by default the larger groups
# run a systematic sample (every n-th mutant by name), which estimates their score; `--full` runs all.
SAMPLE = {"store": 10, "session": 4, "protocol": 6, "scheduler": 3, "backoff": 3}

# mutmut's exit codes (mutmut.stats.status_by_exit_code), folded into the report's columns.
KILLED = {1, 3, 37, -24, 24, 152, 36}  # a failing test, or a hang the CPU limit caught
# 255: under process_isolation = "forkserver" the test runner itself raised (mutmut exits -1), which
# proves nothing about the mutant: such mutants count as not killed and are listed with the survivors.
SURVIVED = {0, 255}
NO_TESTS = {5, 33}


def _mutmut_config(modules: list[str], tests: list[str]) -> str:
    as_list = lambda items: "[" + ", ".join(json.dumps(i) for i in items) + "]"  # noqa: E731
    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["wanx_nb"]\n'
        f"only_mutate = {as_list([f'wanx_nb/{m}.py' for m in modules])}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]\n'
        # Forked from a clean server, not from the process that ran the stats: the tests leave the
        # session's background loop thread behind, and a fork of a process holding its locks hangs.
        'process_isolation = "forkserver"\n'
        # A mutant that makes a run wait forever uses no CPU: only the wall-clock limit, (estimated test
        # time + constant) x multiplier, ends it. mutmut's default x15 costs minutes per such mutant.
        "timeout_multiplier = 3.0\n"
        "timeout_constant = 2.0\n"
        f"pytest_add_cli_args_test_selection = {as_list([f'tests/{t}.py' for t in tests if (ROOT / 'tests' / f'{t}.py').exists()])}\n"
    )


def prepare(group: str) -> Path:
    """The group's working tree: the package, the tests and a pyproject naming what to mutate."""
    modules, tests = GROUPS[group]
    work = WORK / group
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    work.mkdir(parents=True, exist_ok=True)
    for name in ("wanx_nb", "tests"):
        shutil.copytree(ROOT / name, work / name, ignore=ignore, dirs_exist_ok=True)
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8").split("\n[tool.mutmut]")[0]
    (work / "pyproject.toml").write_text(pyproject + _mutmut_config(modules, tests), encoding="utf-8")
    # mutmut re-collects which tests reach which function only for new tests: a function added or changed
    # since would be "no tests". Collected afresh each time (a minute); the verdicts themselves are kept.
    (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    return work


def run(group: str, max_children: int, sample: int, recheck: bool = False, match: str = "",
        pending: bool = False) -> None:
    """Run the group's mutants; with `sample` > 1, every sample-th one (by name), the rest stay pending;
    with `recheck`, only the survivors and the mutants no test reached in an earlier run (whose name
    contains `match`), against the tests as they are now; with `pending` too, those not run yet (the
    mutants of a function changed since)."""
    work = prepare(group)
    print(f"== {group}: {', '.join(GROUPS[group][0])}" + (f" (1 mutant in {sample})" if sample > 1 else ""), flush=True)
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)]
    if recheck and pending:
        # Generate the mutants only (see below): a changed function's verdicts are reset to pending.
        subprocess.run([*cmd, "wanx_nb.no_such_mutant"], cwd=work, check=False, capture_output=True)
    wanted = SURVIVED | NO_TESTS | ({None} if pending else set())
    survivors = sorted(k for found in verdicts(group).values() for k, c in found.items() if c in wanted and match in k)
    if recheck:
        # A survivor judged equivalent cannot be killed: running its tests again only costs time.
        explained, changed = judged(), diffs(group, survivors)
        survivors = [n for n in survivors if not (explained.get(n) or equivalent(changed.get(n, "")))]
        if not survivors:
            return
        cmd += survivors
    elif sample > 1:
        # Generate the mutants only: a filter that matches none stops mutmut right after generating them.
        subprocess.run([*cmd, "wanx_nb.no_such_mutant"], cwd=work, check=False, capture_output=True)
        codes = {k: c for found in verdicts(group).values() for k, c in found.items()}
        chosen = [name for name in sorted(codes)[::sample] if codes[name] is None]
        if not chosen:
            return
        cmd += chosen
    subprocess.run(cmd, cwd=work, check=False, stdout=subprocess.DEVNULL)


def verdicts(group: str) -> dict[str, dict[str, int | None]]:
    """module -> {mutant name: exit code} from the group's mutmut metadata (empty before a run)."""
    out = {}
    for module in GROUPS[group][0]:
        meta = WORK / group / "mutants" / "wanx_nb" / f"{module}.py.meta"
        if meta.exists():
            out[module] = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    return out


_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
out = {}
for line in sys.stdin:
    name, path = line.split()
    diff = get_diff_for_mutant(name, path=path)
    out[name] = "\\n".join(ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---")))
print(json.dumps(out))
"""


def diffs(group: str, names: list[str]) -> dict[str, str]:
    """The changed lines of each mutant, computed in one process per group."""
    if not names:
        return {}
    modules = {n: n.split(".")[1] for n in names}
    given = "".join(f"{n} wanx_nb/{m}.py\n" for n, m in modules.items())
    shown = subprocess.run([sys.executable, "-c", _DIFFS], cwd=WORK / group, input=given, capture_output=True,
                           text=True, check=False)
    return json.loads(shown.stdout) if shown.returncode == 0 else {n: "(diff unavailable)" for n in names}


# Matched in the original's case: the code writes SQL keywords in capitals, and a message's "from",
# "update" or "table" is English.
_SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|WHERE|ORDER BY|SAVEPOINT|RELEASE|ROLLBACK|COMMIT|BEGIN|"
                  r"PRAGMA|CREATE|DROP|ATTACH|DETACH|VALUES|INTO|ALTER|RENAME|TABLE)\b")


# A fragment of a WHERE clause: a `?` placeholder, LIKE/ESCAPE/LIMIT/OFFSET, or a bare AND/OR joiner.
# Not AND/OR/NOT/IS/IN or `=` inside other text: messages have them too ("the run was not started").
_SQL_HINT = re.compile(r"\?|\b(LIKE|ESCAPE|LIMIT|OFFSET)\b|^[\"']\s*(AND|OR)\s*[\"']$")
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
_FIELD = re.compile(r"\{[^{}]*\}")  # an f-string's replacement field
_ROW_KEY = re.compile(r"\b(row|r|t|i|entry)\[\"[A-Z_0-9]+\"\]")  # a sqlite3.Row subscript in capitals


def _changed_literals(removed: str, added: str) -> list[str]:
    """The string literals of a line that the mutant changed (none found: the line itself)."""
    pairs = zip(_QUOTED.findall(removed), _QUOTED.findall(added))
    return [r for r, a in pairs if r != a] or [removed]


def _looks_like_sql(literal: str) -> bool:
    text = _FIELD.sub("", literal)
    return bool(_QUOTED.fullmatch(literal)) and bool(_SQL.search(text) or _SQL_HINT.search(text))


def equivalent(diff: str) -> str | None:
    """Why a survivor cannot change behaviour, for the kinds judged once and for all; else None."""
    removed = [ln[1:] for ln in diff.splitlines() if ln.startswith("-")]
    added = [ln[1:] for ln in diff.splitlines() if ln.startswith("+")]
    if removed and [r.lower() for r in removed] == [a.lower() for a in added]:
        # Each changed string literal (not `raise ... from None`) is SQL: a keyword or a `?` placeholder
        # outside its f-string fields (a message's `{... or ...}` is Python, not SQL).
        if all(all(_looks_like_sql(q) for q in _changed_literals(r, a)) for r, a in zip(removed, added)):
            return "SQL text in another case: SQLite keywords and identifiers are case-insensitive"
        if all(_ROW_KEY.search(a) for a in added):
            return "a column looked up in another case: sqlite3.Row keys are case-insensitive"
    return None


def judged() -> dict[str, str]:
    """Survivors explained one by one in bench/mutation-equivalent.md (lines "- `name`: why")."""
    if not EQUIVALENT.exists():
        return {}
    found = re.findall(r"^- `([^`]+)`: (.+)$", EQUIVALENT.read_text(encoding="utf-8"), re.MULTILINE)
    return dict(found)


def report() -> str:
    rows, sections, totals = [], [], [0, 0, 0, 0, 0]
    explained = judged()
    for group in GROUPS:
        found = verdicts(group)
        alive_all = sorted(k for codes in found.values() for k, c in codes.items() if c in SURVIVED)
        changed = diffs(group, alive_all)
        for module, codes in found.items():
            checked = [c for c in codes.values() if c is not None and c not in NO_TESTS]
            killed = sum(1 for c in checked if c in KILLED)
            alive = sorted(k for k, c in codes.items() if c in SURVIVED)
            why = {n: explained.get(n) or equivalent(changed.get(n, "")) for n in alive}
            same = sum(1 for n in alive if why[n])
            untested = sum(1 for c in codes.values() if c in NO_TESTS)
            pending = sum(1 for c in codes.values() if c is None)
            scored = len(checked) - same
            score = f"{100 * killed / scored:.1f} %" if scored else "-"
            rows.append(f"| `{module}` | {len(codes)} | {killed} | {len(alive) - same} | {same} | {untested} |"
                        f" {pending} | {score} |")
            totals = [a + b for a, b in zip(totals, (scored, killed, len(alive) - same, same, untested))]
            for name in alive:
                note = f"equivalent: {why[name]}" if why[name] else "survived"
                sections += [f"### {name} ({note})", "```diff", changed.get(name, ""), "```", ""]
    score = f"{100 * totals[1] / totals[0]:.1f} %" if totals[0] else "-"
    lines = [
        "# Mutation testing of the pure core", "",
        "Generated by `tools/mutation.py` (mutmut; see README \"Mutation testing\"). Score = killed / (checked -",
        "equivalent). A mutant is checked when a test ran against it; \"no tests\" means none reaches its",
        "function, \"pending\" that it has not run yet. Equivalent: a survivor that cannot change behaviour,",
        "judged by a rule (SQL text, or a sqlite3.Row key, changed only in case) or one by one in bench/mutation-equivalent.md.",
        "`make mutation` alone runs a sample of the larger groups (every n-th mutant by name: "
        + ", ".join(f"{g} 1 in {n}" for g, n in SAMPLE.items())
        + "); `--full` runs every mutant. Mutants not run yet are counted as pending below.", "",
        "| module | mutants | killed | survived | equivalent | no tests | pending | score |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        f"| **all** | | {totals[1]} | {totals[2]} | {totals[3]} | {totals[4]} | | **{score}** |", "",
        "## Survivors", "",
        *sections,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", metavar="GROUP", help=f"groups to run (default: all): {', '.join(GROUPS)}")
    parser.add_argument("--max-children", type=int, default=2, help="parallel mutants (default 2)")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the report")
    parser.add_argument("--recheck", action="store_true",
                        help="run only the survivors and the mutants no test reached again (after new tests)")
    parser.add_argument("--pending", action="store_true",
                        help="with --recheck: also the mutants not run yet (those of a function changed since)")
    parser.add_argument("--match", default="", metavar="TEXT",
                        help="with --recheck: only survivors whose name contains TEXT (e.g. _store_read. or save_image)")
    parser.add_argument("--sample", type=int, metavar="N", help="every N-th mutant of each group given (overrides SAMPLE)")
    parser.add_argument("--full", action="store_true",
                        help="every mutant of every group (default: a systematic sample of the larger groups, SAMPLE)")
    args = parser.parse_args(argv)
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    if not args.report_only:
        for group in args.groups or list(GROUPS):
            sample = 1 if args.full else args.sample or SAMPLE.get(group, 1)
            run(group, args.max_children, sample, args.recheck, args.match, args.pending)
    REPORT.write_text(report(), encoding="utf-8")
    print(f"wrote {REPORT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
