"""Put Python thread names into the kernel's thread names (``/proc/<pid>/task/<tid>/comm``), for bench/scale.py.

Python 3.11 names its threads only inside the interpreter (3.14 passes them
on), so every thread of a node reads ``python`` in /proc and the engine's
thread cannot be told from the web server's. ``bench/scale.py`` puts this
folder on the node processes' ``PYTHONPATH``; at interpreter start this file
wraps ``threading.Thread._bootstrap_inner`` so that each new thread first
calls ``prctl(PR_SET_NAME, name)`` (15 bytes kept: ``bms-engine``,
``engine-db_0``, ...). Nothing else changes; the product never loads it.
"""

import ctypes
import threading

PR_SET_NAME = 15

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: leave the names alone
    _prctl = None

if _prctl is not None:
    _bootstrap_inner = threading.Thread._bootstrap_inner

    def _named_bootstrap_inner(self: threading.Thread) -> None:
        try:
            _prctl(PR_SET_NAME, ctypes.c_char_p(self.name.encode("utf-8", "replace")[:15]), 0, 0, 0)
        except Exception:  # a name is a convenience, never a reason for a thread to fail
            pass
        _bootstrap_inner(self)

    threading.Thread._bootstrap_inner = _named_bootstrap_inner
