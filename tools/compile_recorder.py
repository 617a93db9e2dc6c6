"""Pytest plugin: record every Numba compilation with the test that triggered it.

Usage (cold cache: point NUMBA_CACHE_DIR at an empty directory)::

    FASTCONV_COMPILE_LOG=/tmp/compiles.jsonl python -m pytest -p tools.compile_recorder ...
    python tools/compile_report.py /tmp/compiles.jsonl

One JSON line per ``numba:compile`` event: the dispatcher (module.qualname), the argument
types, the test node id (or ``<collect>`` outside a test), the seconds inclusive of nested
compilations and exclusive of them (wall and thread CPU time).
"""

from __future__ import annotations

import json
import os
import time

import pytest
from numba.core import event

_current_test = ["<collect>"]


class _Recorder(event.Listener):
    def __init__(self, path: str) -> None:
        self._out = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        self._stack: list[list[float]] = []

    def on_start(self, ev: event.Event) -> None:
        self._stack.append([time.perf_counter(), time.thread_time(), 0.0, 0.0])

    def on_end(self, ev: event.Event) -> None:
        wall0, cpu0, child_wall, child_cpu = self._stack.pop()
        wall = time.perf_counter() - wall0
        cpu = time.thread_time() - cpu0
        if self._stack:
            self._stack[-1][2] += wall
            self._stack[-1][3] += cpu
        data = ev.data or {}
        disp = data.get("dispatcher")
        func = getattr(disp, "py_func", None)
        name = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(disp))}"
        record = {
            "kind": "compile",
            "func": name,
            "args": [str(a) for a in data.get("args", ())],
            "test": _current_test[0],
            "wall": round(wall, 4),
            "self_wall": round(wall - child_wall, 4),
            "self_cpu": round(cpu - child_cpu, 4),
            "depth": len(self._stack),
            "pid": os.getpid(),
        }
        self._out.write(json.dumps(record) + "\n")


_recorder: list[_Recorder] = []


def pytest_configure(config) -> None:
    path = os.environ.get("FASTCONV_COMPILE_LOG")
    if path:
        _recorder.append(_Recorder(path))
        event.register("numba:compile", _recorder[0])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Around each test: its wall and process CPU seconds (all threads), as a "test" record."""
    _current_test[0] = item.nodeid
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    if _recorder:
        record = {"kind": "test", "test": item.nodeid, "wall": round(time.perf_counter() - wall, 4),
                  "cpu": round(time.process_time() - cpu, 4), "pid": os.getpid()}
        _recorder[0]._out.write(json.dumps(record) + "\n")

