"""What a dead kernel leaves behind, in-process: its run stopped where it was, and its run lock let go."""

from __future__ import annotations

import time

from wanx_nb._run import Run
from wanx_nb._run_locks import hold


def kernel_dies(run: Run) -> None:
    """Stop `run` as a kernel's death would. The operating system drops a dead process's locks at once;
    a cancelled run lets go of its own on the background loop just after: wait for that."""
    run._future.cancel()
    for _ in range(3000):
        lock = hold(run._store.root, run.run_id)
        if lock is not None:
            lock.release()
            return
        time.sleep(0.01)
    raise AssertionError("the stopped run kept its lock")
