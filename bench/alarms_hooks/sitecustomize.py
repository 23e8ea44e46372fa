"""Instruments the node processes that ``bench/alarms.py`` starts (on their ``PYTHONPATH``); the product never loads it.

* Thread names reach ``/proc/<pid>/task/<tid>/comm`` (``bench/scale_hooks``,
  run from here), so the ``bms-engine`` and ``engine-db_0`` threads can be
  measured apart from Daphne's.
* With ``BENCH_ALARMS_HOOK=<file>``: every tick of the engine's
  :class:`bms.engine.loopwatch.LoopWatch` (20 ms) is also written to that file
  as ``L <monotonic> <lag s>``: the loop's lag, tick by tick, on the clock the
  bench reads (CLOCK_MONOTONIC is the machine's), so the bench can cut out any
  window, such as an alarm flood. Once a second ``S <monotonic> <json>`` adds
  the engine's counters (image seq, alarm evaluations, transitions, alarms
  configured, journal rows written and waiting, and the loop thread's CPU
  seconds inside ``AlarmEngine.run_once``), and every garbage collection
  of 1 ms or more, in any thread, ``G <monotonic start> <generation> <s>``
  (a collection holds the GIL: the loop waits for it too).
* Control: a line ``profile <path> <seconds>`` written to ``<file>.cmd`` makes
  the loop thread run under :mod:`cProfile` for that long, timed by the
  thread's own CPU clock (``time.thread_time``: waits for the GIL and idle
  time are not counted). It is started and stopped from the LoopWatch tick,
  so on the loop's own thread; then the stats go to ``<path>`` and the file
  gets ``P <monotonic> <path>``.
  A line ``gc-freeze`` runs ``gc.collect()`` then ``gc.freeze()`` on the loop's
  thread and logs ``F <monotonic> <objects frozen>`` (``--gc-freeze``).

* With ``BENCH_LOOP_CALLBACKS=1`` (it costs the loop thread several per cent,
  so it is off unless asked for): every loop callback (a task's step, a
  timer, a protocol's data) of 30 ms or more on a thread running an asyncio
  loop: ``C <monotonic start> <wall s>
  <thread CPU s> <what>`` (``what``: the task's name and coroutine, or the
  callback): wall against CPU tells a long step from one that waited for the
  GIL; and every loop iteration whose callbacks ran 50 ms or more in all:
  ``I <monotonic end> <busy s> <callbacks> <callbacks of 2 ms or more>
  <the longest, as wall/CPU ms and what>`` (one tally per process: read it
  in the processes layout, where the engine's loop is the only one).
* Once a second the loop thread's scheduler figures from
  ``/proc/self/task/<tid>/schedstat``: ``W <monotonic> <ns on a CPU> <ns
  runnable but waiting for a CPU>`` (cumulative): whether the host starves
  the loop.
* ``BENCH_SWITCH_INTERVAL=<s>`` sets ``sys.setswitchinterval`` (an
  experiment: how long another thread may hold the GIL against the loop).

The lines are buffered and flushed once a second: a few microseconds per tick,
the same with and without alarms.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.machinery
import json
import os
import runpy
import sys
import threading
import time
from pathlib import Path
from typing import Any

runpy.run_path(str(Path(__file__).resolve().parents[1] / "scale_hooks" / "sitecustomize.py"))

OUT = os.environ.get("BENCH_ALARMS_HOOK", "")


class _State:
    engine: Any = None
    alarm_cpu = 0.0  # thread CPU seconds spent inside AlarmEngine.run_once
    gc_began = 0.0
    file: Any = None
    next_second = 0.0
    profiler: Any = None
    profile_path = ""
    profile_until = 0.0
    iteration: list[Any] = []
    iteration_busy = 0.0
    iteration_count = 0


def _engine_counters() -> dict[str, Any]:
    engine = _State.engine
    if engine is None:
        return {}
    alarms, journal = engine.alarms, engine.journal
    return {
        "seq": engine.image.seq,
        "evaluations": alarms.evaluations,
        "transitions": alarms.transitions,
        "alarms": len(alarms.runtimes),
        "running": alarms.running,
        "journal_written": journal.written,
        "journal_waiting": journal.waiting,
        "journal_dropped": journal.dropped,
        "points": len(engine.image.points),
        "alarm_cpu": _State.alarm_cpu,
        # poll answers and evaluation slices that waited for a later turn of the loop (bms/engine/turns.py)
        "turns_deferred": engine.turns.deferred if engine.turns is not None else 0,
    }


def _each_second(now: float) -> None:
    out = _State.file
    out.write(f"S {now:.6f} {json.dumps(_engine_counters())}\n")
    try:  # the loop thread's time on a CPU and waiting for one (ns, cumulative): is the host starving it?
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat", encoding="ascii") as stat:
            ran, waited = stat.read().split()[:2]
        out.write(f"W {now:.6f} {ran} {waited}\n")
    except OSError:
        pass
    if _State.profiler is not None and now >= _State.profile_until:
        _State.profiler.disable()
        _State.profiler.dump_stats(_State.profile_path)
        out.write(f"P {now:.6f} {_State.profile_path}\n")
        _State.profiler = None
    command_file = OUT + ".cmd"
    # only the process that runs the engine takes commands: in the processes layout the web process loads this
    # hook too, and one that took a profile command would profile the wrong loop
    if _State.engine is not None and os.path.exists(command_file):
        try:
            words = Path(command_file).read_text().split()
            os.remove(command_file)
        except OSError:
            words = []
        if len(words) == 3 and words[0] == "profile" and _State.profiler is None:
            import cProfile

            _State.profile_path, _State.profile_until = words[1], now + float(words[2])
            _State.profiler = cProfile.Profile(time.thread_time)  # CPU of this thread, not GIL waits
            _State.profiler.enable()
            out.write(f"P-start {now:.6f} {words[1]}\n")
        elif words == ["gc-freeze"]:
            # the experiment of bench/alarms.py --gc-freeze: what the engine would gain from gc.freeze() after
            # loading its configuration (everything alive now is left out of later full collections)
            gc.collect()
            gc.freeze()
            out.write(f"F {time.monotonic():.6f} {gc.get_freeze_count()}\n")
    out.flush()


def _patch_loopwatch(module: Any) -> None:
    record = module.LoopWatch.record

    def recorded(self: Any, lag: float, now: float) -> None:
        record(self, lag, now)
        if _State.file is None:
            _State.file = open(OUT, "a", encoding="utf-8")
        _State.file.write(f"L {now:.6f} {lag:.6f}\n")
        if now >= _State.next_second:
            _State.next_second = now + 1.0
            _each_second(now)

    module.LoopWatch.record = recorded


def _patch_runner(module: Any) -> None:
    init = module.Engine.__init__

    def initialised(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        _State.engine = self

    module.Engine.__init__ = initialised


def _gc_timed(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _State.gc_began = time.monotonic()
        return
    took = time.monotonic() - _State.gc_began
    if took >= 0.001 and _State.file is not None:
        _State.file.write(f"G {_State.gc_began:.6f} {info.get('generation')} {took:.6f}\n")


def _patch_alarm_engine(module: Any) -> None:
    run_once = module.AlarmEngine.run_once
    clock = time.thread_time

    def timed_run_once(self: Any, now: Any) -> Any:
        began = clock()
        try:
            return run_once(self, now)  # True: more slices to come (the engine's loop goes on at once)
        finally:
            _State.alarm_cpu += clock() - began

    module.AlarmEngine.run_once = timed_run_once


_PATCHES = {
    "bms.engine.loopwatch": _patch_loopwatch,
    "bms.engine.runner": _patch_runner,
    "bms.alarms.engine": _patch_alarm_engine,
}


class _Finder:
    """Finds the two modules as the path finder does and patches them right after they ran."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> Any:
        patch = _PATCHES.get(name)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        execute = loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            patch(module)

        loader.exec_module = exec_module
        return spec


SLOW_CALLBACK = 0.030
#: a loop iteration whose callbacks ran this long in all is written as ``I <monotonic end> <busy s> <callbacks>
#: <callbacks of 2 ms or more> <the longest: wall/CPU ms what | ...>``
SLOW_ITERATION = 0.050


def _callback_label(callback: Any) -> str:
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        return f"task:{owner.get_name()}:{getattr(coro, '__qualname__', coro)}"
    return repr(callback)[:100].replace("\n", " ")


def _patch_handles() -> None:
    run = asyncio.events.Handle._run
    wall, cpu = time.monotonic, time.thread_time

    def timed(self: Any) -> None:
        began, began_cpu = wall(), cpu()
        try:
            run(self)
        finally:
            took = wall() - began
            if _State.file is not None:
                if took >= SLOW_CALLBACK:
                    label = _callback_label(self._callback)
                    _State.file.write(f"C {began:.6f} {took:.6f} {cpu() - began_cpu:.6f} {label}\n")
                if took >= 0.002:
                    _State.iteration.append((took, cpu() - began_cpu, self._callback))
                _State.iteration_busy += took
                _State.iteration_count += 1

    asyncio.events.Handle._run = timed
    run_once = asyncio.base_events.BaseEventLoop._run_once

    def iteration(self: Any) -> None:
        _State.iteration, _State.iteration_busy, _State.iteration_count = [], 0.0, 0
        run_once(self)
        if _State.iteration_busy >= SLOW_ITERATION and _State.file is not None:
            top = sorted(_State.iteration, key=lambda item: -item[0])[:6]
            parts = " | ".join(f"{w * 1000:.0f}/{c * 1000:.0f} {_callback_label(cb)[:60]}" for w, c, cb in top)
            _State.file.write(
                f"I {wall():.6f} {_State.iteration_busy:.6f} {_State.iteration_count} {len(_State.iteration)} {parts}\n"
            )

    asyncio.base_events.BaseEventLoop._run_once = iteration


if OUT:
    if os.environ.get("BENCH_SWITCH_INTERVAL"):  # experiment: how long a thread holds the GIL against the loop
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
    if os.environ.get("BENCH_LOOP_CALLBACKS") == "1":
        _patch_handles()
    sys.meta_path.insert(0, _Finder())
    gc.callbacks.append(_gc_timed)
    if os.environ.get("BENCH_GC_THRESHOLD"):  # an experiment: the collector's thresholds, e.g. "10000,10,10"
        gc.set_threshold(*(int(part) for part in os.environ["BENCH_GC_THRESHOLD"].split(",")))
    _State.next_second = time.monotonic()
