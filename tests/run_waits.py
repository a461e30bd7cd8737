"""Where a thread blocks: tests that interrupt a run send the signal only once it waits for the run."""

from __future__ import annotations

import sys


def blocked_in_a_runs_wait(thread_id: int | None) -> bool:
    """The thread waits for a run's future right inside Run.result (not in its handling)."""
    frame = sys._current_frames().get(thread_id) if thread_id is not None else None
    while frame is not None:
        caller = frame.f_back
        if (frame.f_code.co_name == "wait" and frame.f_code.co_filename.endswith("_base.py") and caller is not None
                and caller.f_code.co_name == "result" and caller.f_code.co_filename.endswith("_run.py")):
            return True
        frame = caller
    return False
