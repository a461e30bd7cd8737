"""The issue-11 mutations, made by hand: apply each, run its test in tests/test_regressions.py, expect a
failure, restore the file. Run from a clean checkout: `python tools/hand_mutants.py [name filter...]`."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
# (name, file, text replaced, replacement, -k expression selecting the test that must fail)
MUTANTS = [
 ("connect timeout on submit not retried", "wanx_nb/_client_errors.py",
  "(httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)", "(httpx.ConnectError, httpx.PoolTimeout)", "connect_timeout"),
 ("seed 0 rejected", "wanx_nb/_validation.py", "_is_int_in(request.seed, 0, MAX_SEED)", "_is_int_in(request.seed, 1, MAX_SEED)", "seed_zero"),
 ("budget refuses exact fit (>=, no tolerance)", "wanx_nb/_session.py", "if estimate > remaining + 1e-9:", "if estimate >= remaining:", "budget_accepts"),
 ("budget refuses exact fit (tolerance reversed)", "wanx_nb/_session.py", "if estimate > remaining + 1e-9:", "if estimate > remaining - 1e-9:", "budget_accepts"),
 ("budget enforced in replay", "wanx_nb/_session.py", 'if not self.budget_yuan or self.mode == "replay":', "if not self.budget_yuan:", "replay_costs_nothing or replays_under_a_budget"),
 ("redact disabled", "wanx_nb/_exceptions.py", 'return _KEY_PATTERN.sub("sk-***", text)', "return text", "key_echoed"),
 ("upload 409 not tolerated", "wanx_nb/_client_upload.py", 'if not (exc.status_code == 409 and exc.code == "FileAlreadyExists"):', "if True:", "upload_whose"),
 ("resume window 1 h (unfinished)", "wanx_nb/_store.py", "def unfinished(self, *, max_age_hours: float = 24.0", "def unfinished(self, *, max_age_hours: float = 1.0", "full_24_hours"),
 ("resume window 1 h (expired)", "wanx_nb/_store.py", "def expired_unfinished(self, *, max_age_hours: float = 24.0", "def expired_unfinished(self, *, max_age_hours: float = 1.0", "full_24_hours"),
 ("Ctrl-C not stopping the run", "wanx_nb/_run.py", "        except KeyboardInterrupt:\n            self._stop()\n            raise RunInterruptedError(self.summary()) from None\n", "        except ZeroDivisionError:\n            raise\n", "ctrl_c"),
 ("Ctrl-C without the cancels", "wanx_nb/_run.py", "        except KeyboardInterrupt:\n            self._stop()\n", "        except KeyboardInterrupt:\n            pass\n", "ctrl_c"),
 ("CANCELED/UNKNOWN replayed as FAILED", "wanx_nb/_store_queries.py", '{"CANCELED": TaskCanceledError, "UNKNOWN": TaskUnknownError}.get(row["status"], TaskFailedError)', "TaskFailedError", "same_kind_of_error"),
 ("provenance chunk kept twice", "wanx_nb/_png.py", "        if _is_ours(ctype, body):\n            continue\n", "", "exactly_one_provenance"),
 ("provenance chunk after every chunk", "wanx_nb/_png.py", '        if ctype == b"IHDR":\n            parts.append(chunk)', '        if ctype != b"IEND":\n            parts.append(chunk)', "exactly_one_provenance"),
]


def check(only: list[str]) -> int:
    """Apply each mutation (in place, restored afterwards), run its test; the number that survived."""
    survived = 0
    for name, rel, old, new, k in MUTANTS:
        if only and not any(o in name for o in only):
            continue
        path = ROOT / rel
        original = path.read_text()
        if original.count(old) != 1:
            print(f"STALE    {name}: the code it mutates changed; update MUTANTS", flush=True)
            survived += 1
            continue
        path.write_text(original.replace(old, new))
        try:
            r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                "tests/test_regressions.py", "-k", k], cwd=ROOT, capture_output=True, text=True,
                               timeout=300)  # fmt: skip
        finally:
            path.write_text(original)
        killed = r.returncode not in (0, 5)  # 2: the mutant let Ctrl-C stop pytest itself
        survived += not killed
        last = (r.stdout.strip().splitlines() or [""])[-1]
        print(f"{'KILLED ' if killed else 'SURVIVED'} {name}: {last}", flush=True)
    return survived


if __name__ == "__main__":
    raise SystemExit(check(sys.argv[1:]))
