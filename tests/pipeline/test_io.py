"""Folders written as a unit (pipeline.io.atomic_dir): models and bundles (issue 16).

The kill test runs a writer in a child process that replaces one folder over and over,
kills it with SIGKILL at seeded random moments, and checks that the folder is always one
complete version, never a mix of two.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import io as pio
from pipeline.errors import OutputError
from pipeline.io import atomic_dir, protect_inputs


def _any(_: Path) -> None:
    return None


def _fill(d: Path, version: int, n_files: int = 5) -> None:
    for k in range(n_files):
        (d / f"part{k}.txt").write_text(f"{version}\n" * 1000)
    (d / "meta.json").write_text(json.dumps({"version": version}))


def _versions(d: Path) -> set[str]:
    """The versions the files of folder ``d`` hold (one element for a consistent folder)."""
    seen = {p.read_text().split("\n", 1)[0] for p in d.glob("part*.txt")}
    seen.add(str(json.loads((d / "meta.json").read_text())["version"]))
    return seen


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_existing_folder_is_replaced_whole(tmp_path, monkeypatch, exchange):
    """The new folder's files only (an old file absent from the new version is gone), no
    hidden leftovers beside it, the usual permissions; both swap methods."""
    if not exchange:
        monkeypatch.setattr(pio, "_exchange", lambda a, b: False)
    final = tmp_path / "model"
    final.mkdir()
    _fill(final, 1, n_files=7)
    with atomic_dir(final, replaceable=_any) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".")
        _fill(tmp, 2, n_files=3)
    assert sorted(p.name for p in final.iterdir()) == ["meta.json", "part0.txt", "part1.txt",
                                                       "part2.txt"]
    assert _versions(final) == {"2"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    umask = os.umask(0)
    os.umask(umask)
    assert final.stat().st_mode & 0o777 == 0o777 & ~umask


def test_failure_inside_leaves_the_old_folder(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    _fill(final, 1)
    with pytest.raises(RuntimeError, match="boom"), atomic_dir(final, replaceable=_any) as tmp:
        _fill(tmp, 2)
        raise RuntimeError("boom")
    assert _versions(final) == {"1"}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_new_folder_and_missing_parents(tmp_path):
    final = tmp_path / "a" / "b" / "model"
    with atomic_dir(final, replaceable=_any) as tmp:
        _fill(tmp, 3)
    assert _versions(final) == {"3"}


def test_refusals_name_the_folder_and_touch_nothing(tmp_path):
    """A folder the caller does not own, a file in the way, a folder holding an input."""
    d = tmp_path / "results"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not yours") as info, \
            atomic_dir(d, replaceable=lambda p: "not yours"):
        pass
    assert str(d) in str(info.value)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputError, match="not a folder"), atomic_dir(f, replaceable=_any):
        pass
    with protect_inputs([d / "notes.txt"]), \
            pytest.raises(OutputError, match="is an input of this command"), \
            atomic_dir(d, replaceable=_any):
        pass
    assert (d / "notes.txt").read_text() == "mine" and f.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "results"]


_INTERRUPTED = """
import os, sys
from pathlib import Path
real = getattr(os, sys.argv[2])
def created_then_interrupted(*args, **kwargs):  # Ctrl-C landing just after the system call
    real(*args, **kwargs)
    raise KeyboardInterrupt
from pipeline.io import atomic_dir, atomic_path
d = Path(sys.argv[1])
setattr(os, sys.argv[2], created_then_interrupted)
try:
    if sys.argv[2] == "mkdir":
        with atomic_dir(d / "model", replaceable=lambda p: None):
            pass
    else:
        with atomic_path(d / "table.parquet"):
            pass
finally:
    print(sorted(p.name for p in d.iterdir()), flush=True)
"""


@pytest.mark.parametrize("call", ["mkdir", "open"])
def test_interrupt_right_after_creating_the_temporary_leaves_nothing(tmp_path, call):
    """A KeyboardInterrupt that lands between the system call that creates the temporary
    folder (or file) and the block that removes it on failure: it existed, and the
    interpreter's exit removes it (temporaries are registered before they are made)."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", _INTERRUPTED, str(tmp_path), call],
                          capture_output=True, text=True, cwd=root, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr, proc.stderr
    during = proc.stdout.strip()
    assert (".model." if call == "mkdir" else ".table.parquet.") in during, during
    assert list(tmp_path.iterdir()) == []


_WRITER = """
import itertools, json, signal, sys
from pathlib import Path
# a shell that starts jobs in the background hands them SIGINT ignored: restore Ctrl-C
signal.signal(signal.SIGINT, signal.default_int_handler)
from pipeline.io import atomic_dir
final = Path(sys.argv[1])
print("ready", flush=True)
for v in itertools.count(2):
    with atomic_dir(final, replaceable=lambda p: None) as tmp:
        for k in range(5):
            (tmp / f"part{k}.txt").write_text(f"{v}\\n" * 20000)
        (tmp / "meta.json").write_text(json.dumps({"version": v}))
"""


@pytest.mark.parametrize("sig,exchange", [(signal.SIGKILL, True), (signal.SIGKILL, False),
                                          (signal.SIGINT, True)],
                         ids=["sigkill-renameat2", "sigkill-two-renames", "sigint"])
def test_kill_at_random_moments_leaves_one_complete_version(tmp_path, sig, exchange):
    """A process replacing a folder in a loop, killed at 8 seeded random moments: the
    folder (or, with the portable two-rename swap, its moved-aside copy) is always one
    complete version; what SIGKILL leaves is hidden (a dot name); after SIGINT
    (KeyboardInterrupt) nothing is left but the folder."""
    rng = np.random.default_rng(16)
    final = tmp_path / "model"
    final.mkdir()
    _fill(final, 1)
    code = _WRITER if exchange else _WRITER.replace(
        "from pipeline.io import atomic_dir",
        "import pipeline.io as pio; pio._exchange = lambda a, b: False\n"
        "from pipeline.io import atomic_dir")
    root = Path(__file__).resolve().parents[2]
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", code, str(final)],
                                stdout=subprocess.PIPE, text=True, cwd=root,
                                env={**os.environ, "PYTHONPATH": str(root)})
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.0, 0.3)))
        proc.send_signal(sig)
        try:
            proc.wait(timeout=120)
        finally:
            proc.kill()
            proc.stdout.close()
        visible = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
        if sig == signal.SIGINT:
            assert [p.name for p in tmp_path.iterdir()] == ["model"]
        if exchange:
            assert visible == [final]
        if final.exists():
            assert len(_versions(final)) == 1
        else:  # killed between the two renames: the old folder is kept, hidden
            assert not exchange
            (aside,) = tmp_path.glob(".model.*.old/x")
            assert len(_versions(aside)) == 1
            os.replace(aside, final)
