"""Instruments the node that ``bench/logic.py`` starts (on its ``PYTHONPATH``); the product never loads it.

Everything ``bench/alarms_hooks`` does (thread names, the loop's lag per
tick, the engine's counters per second, slow garbage collections: see that
file), and with ``BENCH_LOGIC_HOOK=<file>``, from
:class:`bms.logic.engine.LogicEngine`:

* once a second ``R <monotonic> <json>``: its counters (rules, running,
  evaluations, commands, CPU seconds of its passes) and the command sink's;
* for each command of a rule whose name starts with ``probe``:
  ``C <command id> <µs since 1970>`` with the latest change time of the
  rule's inputs as the image holds it when the command is made (the read
  that changed it), so the bench can put the command's ``finished_at`` (the
  device answered the write) against it.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import runpy
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

runpy.run_path(str(Path(__file__).resolve().parents[1] / "alarms_hooks" / "sitecustomize.py"))

OUT = os.environ.get("BENCH_LOGIC_HOOK", "")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class _State:
    file: Any = None
    next_second = 0.0


def _write(line: str) -> None:
    if _State.file is None:
        _State.file = open(OUT, "a", encoding="utf-8")  # open for the life of the process
    _State.file.write(line)


def _patch_logic(module: Any) -> None:
    apply = module.LogicEngine._apply

    def applied(self: Any, result: Any, now: Any) -> None:
        for command in result.commands:
            if command.rule.startswith("probe"):
                rule = self.runner._by_name.get(command.rule)
                times = [
                    state.change_time
                    for name in (rule.spec.points if rule is not None else ())
                    if (state := self.image.points.get(name)) is not None and state.change_time is not None
                ]
                if times:
                    _write(f"C {command.command_id} {(max(times) - _EPOCH) // _MICROSECOND}\n")
        apply(self, result, now)
        moment = time.monotonic()
        if moment >= _State.next_second:
            _State.next_second = moment + 1.0
            _write(f"R {moment:.6f} {json.dumps({**self.stats(), **self.sink.stats()})}\n")
            _State.file.flush()

    module.LogicEngine._apply = applied


class _Finder:
    """Patches bms.logic.engine right after it ran (as bench/alarms_hooks does for its modules)."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> Any:
        if name != "bms.logic.engine":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        execute = loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            _patch_logic(module)

        loader.exec_module = exec_module
        return spec


if OUT:
    sys.meta_path.insert(0, _Finder())
