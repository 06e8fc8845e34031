"""TensorFlow's start-up notices, kept off a person's terminal.

On CPUs with AVX-512, TensorFlow's C++ side says "oneDNN custom operations are on" (and absl
that it logs before being initialised) whatever ``TF_CPP_MIN_LOG_LEVEL`` asks: that log level
is read only after those lines are written. A worker under ``make run`` would greet every
person with them. Importing through ``import_quietly`` drops exactly those lines; anything else
written to stderr meanwhile (a real error) is passed on.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tempfile
from types import ModuleType

STARTUP_NOTICES = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called|oneDNN custom operations are on"
    r"|cpu_feature_guard\.cc"
)


def import_quietly(name: str) -> ModuleType:
    """``importlib.import_module(name)`` with TensorFlow's start-up notices dropped from stderr."""
    if name in sys.modules:
        return sys.modules[name]
    sys.stderr.flush()
    # The notices come from C++, so the file descriptor is caught, not sys.stderr.
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            return importlib.import_module(name)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines(keepends=True):
                if not STARTUP_NOTICES.search(line):
                    sys.stderr.write(line)
