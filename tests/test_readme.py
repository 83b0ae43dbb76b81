"""The README's test command is what CI runs, and its main-job command is the demo."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]


def test_ci_runs_the_readme_test_command():
    main_job, tests = _readme_commands()
    assert "lcpipe demo" in main_job
    assert tests in (ROOT / ".ci" / "run").read_text()


def test_every_results_command_is_in_the_one_command():
    """Each command of the README's CRTS results table is a step of
    benchmarks/eval_all_crts.py (one command regenerates the table), which lists them."""
    import re
    import subprocess
    import sys

    text = (ROOT / "README.md").read_text()
    section = text.split("## Results on the shared CRTS set", 1)[1].split("\n## ", 1)[0]
    quoted = set(re.findall(r"`(python benchmarks/[^`]+)`", section))
    assert len(quoted) >= 6, quoted
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from eval_all_crts import STEPS
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "eval_all_crts.py"),
                          "--list", "--only", ",".join(name for name, _ in STEPS)],
                         capture_output=True, text=True, check=True).stdout
    listed = {ln.split(": ", 1)[1] for ln in out.splitlines()}
    missing = sorted(q for q in quoted if q.replace("nice -n 10 ", "") not in listed)
    assert not missing, missing
    assert "one command" in section and "eval_all_crts.py" in section
