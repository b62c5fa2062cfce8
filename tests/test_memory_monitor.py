"""engine.MemoryMonitor: peak RSS per stage of the driver and of its (forked) worker processes."""

import json
import os
import subprocess
import sys

import pytest

from fusionkit.engine import MemoryMonitor

# in a fresh process: the high-water mark of the test process is whatever earlier tests left
SCENARIO = r"""
import json, os, time
import numpy as np
from fusionkit.engine import MemoryMonitor

mon = MemoryMonitor(interval=0.02).start()
mon.stage("small")
time.sleep(0.05)
mon.stage("big")
block = np.ones(64 * 2 ** 20 // 8)  # 64 MiB touched: raises the driver's high-water mark
del block
mon.stage("worker")
pid = os.fork()
if pid == 0:  # a worker that holds 96 MiB for a while
    buf = np.ones(96 * 2 ** 20 // 8)
    time.sleep(0.4)
    os._exit(int(buf[0]) - 1)
os.waitpid(pid, 0)
print(json.dumps(mon.stop()))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_stage_peaks_driver_and_workers():
    out = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=120, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    stages = report["stages"]
    assert set(stages) == {"small", "big", "worker"}
    assert stages["big"]["rss_mib"] >= stages["small"]["rss_mib"] + 60
    assert stages["worker"]["workers"] == 1
    assert stages["worker"]["workers_rss_mib"] >= 96
    assert stages["small"]["workers"] == 0 and stages["small"]["workers_rss_mib"] == 0
    assert report["peak_rss_mib"] >= stages["big"]["rss_mib"] - 1
    assert report["workers_peak_rss_mib"] >= 96


def test_stop_twice_and_without_proc(monkeypatch):
    mon = MemoryMonitor()
    monkeypatch.setattr(mon, "available", False)
    mon.start()
    mon.stage("a")
    first = mon.stop()
    assert mon.stop()["stages"] == first["stages"]
    assert first["method"] == "ru_maxrss only (no /proc here)"
