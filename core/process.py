"""How a process that has used the Temporal client ends: after its own clean shutdown, without interpreter teardown.

The Temporal SDK's Rust bridge keeps Tokio threads that can still call into Python while CPython finalizes; the
process then aborts with ``Fatal Python error: PyGILState_Release`` (SIGABRT, exit -6) although every worker and
connection was already shut down (temporalio/sdk-python#300). Once ``main`` has returned, nothing is left to
clean up but buffered output, so the entry points flush it and leave with ``os._exit``.
"""

from __future__ import annotations

import logging
import os
import sys


def exit_now(code: int = 0) -> None:
    """Flush logging and the standard streams, then end the process with ``code`` and no interpreter teardown."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can be written anyway
            pass
    os._exit(code)
