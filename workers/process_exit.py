"""Leaving a process that used a Temporal client, without the interpreter's teardown.

temporalio's Rust core keeps threads of its own; when the interpreter finalizes while one of them
still works (a connection attempt that just failed, mostly), the process hangs in garbage
collection or aborts with "Fatal Python error: PyGILState_Release" after its work has finished
(temporalio/sdk-python#300). A process that has closed what it opened loses nothing by leaving at
once, once its output, logs and buffered spans are out.
"""

import contextlib
import logging
import os
import sys
from typing import NoReturn

from telemetry import tracing


def leave(code: int) -> NoReturn:
    # os._exit skips atexit: spans still buffered for export are sent now.
    tracing.current().shutdown()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed, or a pipe read no further
            stream.flush()
    os._exit(code)
