"""CPU priority of background processes (``priority.py``), in fresh subprocesses: a
process cannot take back a priority it gave up."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "nice") or not os.path.isdir("/proc/self/task"), reason="Linux niceness")

SCRIPT = r"""
import json, os, threading
from cvmatch_ray.priority import lower_priority

started = threading.Event()
stop = threading.Event()
def worker():
    started.set()
    stop.wait()
before = threading.Thread(target=worker, daemon=True)
before.start(); started.wait()
first = lower_priority(INCREMENT)
again = lower_priority(INCREMENT)
seen = {}
after = threading.Thread(target=lambda: seen.update(after=os.nice(0)))
after.start(); after.join()
threads = {}
for t in os.listdir("/proc/self/task"):
    try:
        threads[t] = os.getpriority(os.PRIO_PROCESS, int(t))
    except ProcessLookupError:  # a runtime's short-lived thread, gone already
        pass
stop.set(); before.join()
print(json.dumps({"start": START, "first": first, "again": again, "after": seen["after"], "threads": sorted(set(threads.values()))}))
"""


def _run(increment: int) -> dict:
    start = os.nice(0)
    code = SCRIPT.replace("INCREMENT", str(increment)).replace("START", str(start))
    # Without the test process's LD_PRELOAD (vLLM's CPU platform sets one on import): a
    # preloaded runtime's threads are not what is tested here.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_every_thread_is_lowered_once_and_new_threads_inherit_it() -> None:
    r = _run(5)
    expected = min(r["start"] + 5, 19)
    assert r["first"] == expected
    assert r["again"] == expected  # a second call lowers nothing more
    assert r["threads"] == [expected]  # the thread started before, too
    assert r["after"] == expected


def test_niceness_stops_at_19_and_zero_means_unchanged() -> None:
    assert _run(40)["threads"] == [19]
    r = _run(0)
    assert r["threads"] == [r["start"]]
