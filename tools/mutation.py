"""Mutation testing of lcpipe's science modules (mutmut 3; run by hand, not in CI).

    python tools/mutation.py                  # every module group below
    python tools/mutation.py dmdt clean       # some groups
    python tools/mutation.py --list           # the groups, their files and tests

Each group is run in its own scratch copy of the repository (``--workdir``, default
``$TMPDIR/lcpipe-mutation``; the work tree is never touched) with
``mutmut run --max-children 1``, scoped by ``only_mutate`` to the group's files and by
``pytest_add_cli_args_test_selection`` to its test files (``-m "not slow"``: the CRTS
tests need ../shared). mutmut records which tests call each function and runs only
those tests, ``-x``, against each mutant. The command prints killed/total per file,
every mutant not killed (file:line, the change) and the wall time, and writes them
to ``--report`` (Markdown).

Numba kernels
-------------
mutmut 3 never mutates decorated functions, and a trampoline (the Python switch that
picks the active mutant) cannot be compiled by numba. For the files marked ``numba``
the scratch copy therefore has its ``@njit`` / ``@numba.njit`` / ``@nb.njit``
decorators blanked out (same line numbers), and the options of each are written to
``LCPIPE_MUTATION_KERNELS``. This file, loaded as a pytest plugin (``-p
tools.mutation``) in every test run, then compiles the kernels again with those
options (``cache`` off): in each mutant's process the mutated kernel, and every kernel
that calls it, are compiled from the mutant's source, so the tests run the mutant at
compiled speed (pure Python under ``NUMBA_DISABLE_JIT`` is far too slow for the period
search). mutmut's per-test bookkeeping sees calls from Python only; a kernel called
only by other kernels is credited with the tests of its callers.

Fork safety: mutmut forks one process per mutant from a process that has run the
tests; numba's OpenMP threading layer kills a forked child that uses it again
(SIGTERM, counted as 'suspicious'), so the runs use ``NUMBA_THREADING_LAYER=workqueue``
and one numba thread.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY = ["pipeline", "features", "models", "flows", "tests", "tools", "docs", "pyproject.toml",
        "README.md"]
KERNELS_ENV = "LCPIPE_MUTATION_KERNELS"

# group -> files to mutate, tests that exercise them, optional mutant-name patterns
# (mutmut's glob over "module.x_function__mutmut_N"; None: every function of the files),
# and which files hold numba kernels.
GROUPS: dict[str, dict] = {
    "dmdt": {
        "files": ["pipeline/dmdt.py"],
        "tests": ["tests/pipeline/test_dmdt.py", "tests/pipeline/test_dmdt_mutants.py",
                  "tests/test_constants.py"],
    },
    "dmdt_kernels": {
        "files": ["pipeline/_dmdt_impl.py"],
        "numba": ["pipeline/_dmdt_impl.py"],
        "tests": ["tests/pipeline/test_dmdt.py", "tests/pipeline/test_dmdt_mutants.py",
                  "tests/test_constants.py"],
    },
    "validate": {
        "files": ["pipeline/validate.py"],
        "tests": ["tests/pipeline/test_validate.py", "tests/pipeline/test_validate_mutants.py"],
    },
    "clean_kernels": {
        "files": ["pipeline/_clean_impl.py"],
        "numba": ["pipeline/_clean_impl.py"],
        "tests": ["tests/pipeline/test_validate.py"],
    },
    "rpca": {
        "files": ["pipeline/rpca.py", "pipeline/_rpca_impl.py"],
        "numba": ["pipeline/_rpca_impl.py"],
        "tests": ["tests/pipeline/test_rpca.py", "tests/pipeline/test_rpca_mutants.py",
                  "tests/test_constants.py"],
    },
    "rpca_dmdt": {
        "files": ["pipeline/rpca_dmdt.py"],
        "tests": ["tests/pipeline/test_rpca_dmdt.py", "tests/pipeline/test_rpca_dmdt_mutants.py"],
    },
    "fourier": {
        "files": ["features/fourier.py", "features/periodic.py"],
        "tests": ["tests/features/test_fourier.py", "tests/features/test_fourier_features.py",
                  "tests/features/test_groups.py", "tests/features/test_fourier_mutants.py"],
    },
    "period": {
        "files": ["features/period.py", "features/_period_impl.py"],
        "numba": ["features/_period_impl.py"],
        "tests": ["tests/features/test_period.py", "tests/features/test_period_mutants.py",
                  "tests/test_constants.py"],
    },
    "features_stats": {
        "files": ["features/base.py", "features/lightcurve.py", "features/colour.py"],
        "numba": ["features/base.py"],
        "tests": ["tests/features/test_groups.py", "tests/features/test_api.py",
                  "tests/features/test_stats_mutants.py"],
    },
    "forest_predict": {
        "files": ["models/forest.py", "models/forest_files.py"],
        "tests": ["tests/models/test_forest.py", "tests/models/test_forest_mutants.py"],
        # the prediction path: input checks, imputation, predict / predict_proba, the model
        # and feature-table checks on load, the file command
        "patterns": ["models.forest.xǁLightCurveForestǁ_check_X*",
                     "models.forest.xǁLightCurveForestǁ_impute*",
                     "models.forest.xǁLightCurveForestǁpredict*",
                     "models.forest.x_load_forest*",
                     "models.forest_files.x_select_feature_columns*",
                     "models.forest_files.x_check_feature_table*",
                     "models.forest_files.x_predict_forest_file*"],
    },
    "cnn_predict": {
        "files": ["models/cnn.py"],
        # the value tests with hand-set networks only: test_cnn.py trains networks (30-50 s
        # per mutant); a mutant they would kill counts as surviving (a lower bound)
        "tests": ["tests/models/test_cnn_mutants.py"],
        # TensorFlow's thread pools do not survive a fork: fork each mutant from a server
        # that has only collected the tests
        "isolation": "forkserver",
        # the prediction path: input checks, predict / predict_proba, metadata checks, load
        "patterns": ["models.cnn.x__check_images*", "models.cnn.xǁDmDtCNNǁ_check_predict_X*",
                     "models.cnn.xǁDmDtCNNǁpredict*", "models.cnn.xǁDmDtCNNǁcheck_input_meta*",
                     "models.cnn.x_load_cnn*"],
    },
}


# --------------------------------------------------------------------------- scratch copy


_JIT_NAMES = {"njit", "jit"}


def _jit_options(dec: ast.expr) -> dict | None:
    """Keyword options of a numba jit decorator, or None if ``dec`` is not one."""
    call = dec if isinstance(dec, ast.Call) else None
    func = call.func if call else dec
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in _JIT_NAMES:
        return None
    if call and call.args:
        raise ValueError(f"positional jit arguments (signatures) not supported: line {dec.lineno}")
    opts = {kw.arg: ast.literal_eval(kw.value) for kw in (call.keywords if call else [])}
    return {k: (sorted(v) if isinstance(v, set) else v) for k, v in opts.items()}


def strip_kernels(path: Path) -> dict[str, dict]:
    """Blank out the jit decorators of ``path`` in place; return {kernel: options}."""
    src = path.read_text()
    lines = src.splitlines(keepends=True)
    kernels: dict[str, dict] = {}
    for node in ast.parse(src).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for dec in node.decorator_list:
            opts = _jit_options(dec)
            if opts is None:
                continue
            if len(node.decorator_list) != 1:
                raise ValueError(f"{path}:{node.lineno}: a kernel with other decorators")
            kernels[node.name] = opts
            for i in range(dec.lineno - 1, dec.end_lineno):  # the '@' line to the ')'
                lines[i] = "\n"
    path.write_text("".join(lines))
    return kernels


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(x) for x in items) + "]"


def mutmut_section(files: list[str], tests: list[str], numba: bool,
                   isolation: str = "fork") -> str:
    args = ["-m", "not slow", "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:xdist"]
    if numba:
        args += ["-p", "tools.mutation"]
    return "\n".join([
        "[tool.mutmut]",
        'source_paths = ["pipeline", "features", "models", "flows"]',
        'also_copy = ["tools/", "docs/", "README.md"]',  # some tests read the docs
        f"only_mutate = {_toml_list(files)}",
        f"pytest_add_cli_args = {_toml_list(args)}",
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}",
        "use_git_change_detection = false",
        # a mutated kernel is compiled again in the mutant's process: allow for it; a
        # mutant is stopped after 5 x (its tests' time + constant) (mutmut's default 15 x
        # makes each endless-loop mutant cost minutes)
        f"timeout_constant = {20.0 if numba else 5.0}",
        "timeout_multiplier = 5.0",
        f'process_isolation = "{isolation}"',
        "",
    ])


def prepare(group: str, spec: dict, work: Path) -> tuple[Path, dict]:
    """Scratch copy of the repository for ``group``; returns (dir, kernel manifest)."""
    d = work / group
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", "mutants")
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, d / name, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, d / name)
    manifest: dict[str, dict] = {}
    for f in spec.get("numba", []):
        module = f[:-3].replace("/", ".")
        manifest[module] = strip_kernels(d / f)
    pyproject = d / "pyproject.toml"
    text = pyproject.read_text()
    text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text)  # ours replaces the repo's
    pyproject.write_text(text.rstrip() + "\n\n"
                         + mutmut_section(spec["files"], spec["tests"], bool(manifest),
                                        spec.get("isolation", "fork")))
    return d, manifest


# --------------------------------------------------------------------------- results

#: statuses that count as a detected (killed) mutant in the score
DETECTED = ("killed", "timeout", "crash", "type check")
_KILLED = {1, 3}
# a mutant process killed by SIGSEGV, SIGABRT, SIGBUS or SIGFPE: a compiled kernel that
# crashed (numba does not check bounds unless NUMBA_BOUNDSCHECK): the mutant is detected
_CRASH = {-11, -6, -7, -8, 139, 134}
_TIMEOUT = {36, -24, 24, 152, 255}
_NO_TESTS = {5, 33}


def _status(code) -> str:
    if code in _KILLED:
        return "killed"
    if code in _TIMEOUT:
        return "timeout"
    if code in _CRASH:
        return "crash"
    if code == 0:
        return "survived"
    if code in _NO_TESTS:
        return "no tests"
    if code is None:
        return "not checked"
    if code == 37:
        return "type check"
    return f"suspicious ({code})"


_DIFFS = r"""
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
out = {}
for name, path in json.loads(sys.stdin.read()):
    try:
        out[name] = get_diff_for_mutant(name, path=path)
    except Exception as exc:  # noqa: BLE001
        out[name] = f"(no diff: {exc})"
print(json.dumps(out))
"""


def _def_lines(path: Path) -> dict[str, int]:
    """'func' / 'Class.method' -> line of its ``def``."""
    out: dict[str, int] = {}
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = node.lineno
        elif isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef):
                    out[f"{node.name}.{sub.name}"] = sub.lineno
    return out


def _function_of(mutant: str) -> str:
    short = mutant.rpartition(".")[2].rpartition("__mutmut_")[0]
    if short.startswith("xǁ"):
        cls, _, meth = short[2:].partition("ǁ")
        return f"{cls}.{meth}"
    return short[2:]  # "x_" prefix


def _change(diff: str, def_line: int) -> tuple[int | None, str]:
    """(file line of the first changed line, '-old' / '+new' text) from a function diff."""
    old = None
    minus, plus, first = [], [], None
    for line in diff.splitlines():
        m = re.match(r"@@ -(\d+)", line)
        if m:
            old = int(m.group(1))
            continue
        if old is None or line.startswith(("---", "+++")):
            continue
        if line.startswith("-"):
            first = first or old
            minus.append(line[1:].strip())
            old += 1
        elif line.startswith("+"):
            first = first or old
            plus.append(line[1:].strip())
        else:
            old += 1
    line_no = def_line + first - 1 if first is not None else None
    return line_no, f"- {' '.join(minus)}\n+ {' '.join(plus)}"


def exit_codes(d: Path, f: str, spec: dict) -> dict[str, int | None]:
    """mutmut's exit code per mutant of file ``f`` in scratch copy ``d`` (None: not run),
    restricted to the group's mutant-name patterns."""
    import fnmatch

    meta = d / "mutants" / (f + ".meta")
    codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
    patterns = spec.get("patterns")
    if patterns:
        codes = {k: v for k, v in codes.items()
                 if any(fnmatch.fnmatchcase(k, p) for p in patterns)}
    return codes


def collect(d: Path, spec: dict) -> dict[str, dict]:
    """Per file: counts by status and the mutants not killed (with line and change)."""
    per_file: dict[str, dict] = {}
    wanted: list[tuple[str, str]] = []
    for f in spec["files"]:
        codes = exit_codes(d, f, spec)
        counts: dict[str, int] = {}
        rows = []
        for name, code in sorted(codes.items()):
            st = _status(code)
            counts[st] = counts.get(st, 0) + 1
            if st not in (*DETECTED, "not checked"):
                rows.append({"mutant": name, "status": st})
                wanted.append((name, f))
        per_file[f] = {"counts": counts, "total": len(codes), "not_killed": rows}
    if wanted:
        res = subprocess.run([sys.executable, "-c", _DIFFS], cwd=d, input=json.dumps(wanted),
                             capture_output=True, text=True, check=False)
        diffs = json.loads(res.stdout) if res.returncode == 0 else {}
        for f, info in per_file.items():
            defs = _def_lines(d / f)
            for row in info["not_killed"]:
                diff = diffs.get(row["mutant"], "")
                fn = _function_of(row["mutant"])
                line, change = _change(diff, defs.get(fn, 1))
                row.update(function=fn, line=line, change=change)
    return per_file


# --------------------------------------------------------------------------- run


def refresh_tests(group: str, spec: dict, work: Path) -> tuple[Path, dict, list[str]]:
    """For ``--recheck``: check that the mutated files are unchanged, copy tests/ from the
    work tree into the scratch copy of an earlier run; return (dir, kernel manifest,
    mutants to rerun: those not killed, and those a capped run did not check)."""
    d = work / group
    if not (d / "mutants").is_dir():
        sys.exit(f"{d}: no earlier run of group {group!r} to recheck")
    manifest: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for f in spec["files"]:  # the mutants must be of the work tree's source
            mine = Path(tmp) / Path(f).name
            shutil.copy2(ROOT / f, mine)
            if f in spec.get("numba", []):
                manifest[f[:-3].replace("/", ".")] = strip_kernels(mine)
            if mine.read_text() != (d / f).read_text():
                sys.exit(f"{f} changed since the run in {d}: run group {group!r} afresh")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    shutil.copytree(ROOT / "tests", d / "tests", ignore=ignore, dirs_exist_ok=True)
    again = []  # survivors, and mutants a capped run did not reach
    for f in spec["files"]:
        codes = exit_codes(d, f, spec)
        again += [k for k, v in sorted(codes.items())
                  if _status(v) not in DETECTED]
    return d, manifest, again


def run_group(group: str, spec: dict, work: Path, max_children: int, log,
              max_minutes: float | None = None, recheck: bool = False) -> dict:
    t0 = time.monotonic()
    if recheck:
        d, manifest, names = refresh_tests(group, spec, work)
        log(f"{group}: rechecking {len(names)} mutants not killed or not checked before")
        if not names:
            return {"group": group, "wall_s": 0.0, "returncode": 0, "stopped": False,
                    "files": collect(d, spec)}
    else:
        d, manifest = prepare(group, spec, work)
        names = spec.get("patterns", [])
    env = dict(os.environ,
               NUMBA_THREADING_LAYER="workqueue",  # OpenMP's layer is not fork-safe
               NUMBA_NUM_THREADS="1",
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               LCPIPE_CNN_THREADS="1", TF_NUM_INTRAOP_THREADS="1",
               PYTHONDONTWRITEBYTECODE="1")
    if manifest:
        env[KERNELS_ENV] = json.dumps(manifest)
        # an index out of bounds raises IndexError instead of corrupting memory: a mutant
        # that writes past an array is killed, not left to crash or survive by chance
        env["NUMBA_BOUNDSCHECK"] = "1"
    mutmut = Path(sys.executable).with_name("mutmut")
    if not mutmut.exists():
        sys.exit(f"{mutmut} not found: pip install 'mutmut>=3.8,<4' into this environment")
    cmd = [str(mutmut), "run", "--max-children", str(max_children), *names]
    stopped = False
    with open(work / f"{group}.log", "w") as out:
        # own session: on the time limit, mutmut and its forked mutant processes are ended
        # together (mutmut keeps every verdict it has, it saves them one by one)
        proc = subprocess.Popen(cmd, cwd=d, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=max_minutes * 60 if max_minutes else None)
        except subprocess.TimeoutExpired:
            stopped = True
            for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
    wall = time.monotonic() - t0
    files = collect(d, spec)
    log(f"{group}: mutmut exit {proc.returncode}{' (stopped at the time limit)' if stopped else ''}"
        f", {wall / 60:.1f} min (log {work / group}.log)")
    return {"group": group, "wall_s": wall, "returncode": proc.returncode, "stopped": stopped,
            "files": files}


def _score(info: dict) -> tuple[int, int]:
    """(killed, checked): timeouts and crashes count as killed."""
    c = info["counts"]
    killed = sum(c.get(k, 0) for k in DETECTED)
    return killed, info["total"] - c.get("not checked", 0)


def report(results: list[dict]) -> str:
    out = ["# Mutation testing", "",
           "| group | file | killed / checked | score | no tests | survived | other | "
           "not checked | wall |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        for f, info in r["files"].items():
            k, n = _score(info)
            c = info["counts"]
            other = n - k - c.get("no tests", 0) - c.get("survived", 0)
            pct = f"{100 * k / n:.1f} %" if n else "-"
            out.append(f"| {r['group']} | {f} | {k} / {n} | {pct} | {c.get('no tests', 0)} | "
                       f"{c.get('survived', 0)} | {other} | {c.get('not checked', 0)} | "
                       f"{r['wall_s'] / 60:.1f} min |")
    out.append("")
    for r in results:
        for f, info in r["files"].items():
            if not info["not_killed"]:
                continue
            out += [f"## {f}", ""]
            for row in sorted(info["not_killed"], key=lambda x: (x.get("line") or 0)):
                change = row.get("change", "").replace("\n", " / ")
                out.append(f"- `{f}:{row.get('line')}` {row['status']} `{row['mutant']}`: "
                           f"`{change}`")
            out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("groups", nargs="*", help=f"default: all of {', '.join(GROUPS)}")
    p.add_argument("--list", action="store_true", help="print the groups and exit")
    p.add_argument("--workdir", type=Path,
                   default=Path(tempfile.gettempdir()) / "lcpipe-mutation")
    p.add_argument("--max-children", type=int, default=1)
    p.add_argument("--max-minutes", type=float,
                   help="stop each group's mutmut after this long (unchecked mutants are "
                        "reported as 'not checked'; mutmut tries the mutants with the "
                        "fastest tests first)")
    p.add_argument("--report", type=Path, help="write the Markdown report here")
    p.add_argument("--collect-only", action="store_true",
                   help="report on the scratch copies of an earlier run, run nothing")
    p.add_argument("--recheck", action="store_true",
                   help="in the scratch copies of an earlier run, take the test files from "
                        "the work tree again and rerun only the mutants not killed (or not "
                        "checked)")
    a = p.parse_args(argv)
    if a.list:
        for g, s in GROUPS.items():
            print(f"{g}: {' '.join(s['files'])}  <-  {' '.join(s['tests'])}"
                  + (f"  [{' '.join(s['patterns'])}]" if s.get("patterns") else ""))
        return 0
    unknown = [g for g in a.groups if g not in GROUPS]
    if unknown:
        p.error(f"unknown group(s) {unknown}; see --list")
    a.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    results = []
    for g in a.groups or list(GROUPS):
        if a.collect_only:
            d = a.workdir / g
            results.append({"group": g, "wall_s": 0.0, "returncode": None,
                            "files": collect(d, GROUPS[g])})
        else:
            results.append(run_group(g, GROUPS[g], a.workdir, a.max_children,
                                     lambda s: print(s, flush=True), a.max_minutes,
                                     recheck=a.recheck))
        if not a.collect_only:
            (a.workdir / "results.json").write_text(json.dumps(results, indent=1))
    text = report(results)
    print(text)
    print(f"\ntotal wall time {(time.monotonic() - t0) / 60:.1f} min")
    if a.report:
        a.report.write_text(text + "\n")
    return 0


# --------------------------------------------------------------------------- pytest plugin
# Loaded with ``-p tools.mutation`` in the scratch copies of groups with numba kernels.

_DISPATCHERS: dict[tuple[str, str, str], object] = {}  # (module, kernel, variant) -> dispatcher
_ACTIVE: dict[str, str] = {}  # module -> variant configuration installed in this process


def _closure(refs: dict[str, set[str]], k: str) -> set[str]:
    seen, todo = set(), [k]
    while todo:
        for j in refs[todo.pop()]:
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return seen


def install_kernels() -> None:
    """Compile each stripped kernel for the active mutant (see the module docstring)."""
    import importlib
    import types

    import numba
    from mutmut.mutation.trampoline import get_mutant_under_test
    from mutmut.stats import record_trampoline_hit

    manifest = json.loads(os.environ[KERNELS_ENV])
    active = get_mutant_under_test()
    act_mod, _, act_name = active.rpartition(".")
    for modname, kernels in manifest.items():
        mod = importlib.import_module(modname)
        orig = {k: getattr(mod, f"x_{k}__mutmut_orig") for k in kernels}
        refs = {k: {j for j in kernels if j != k and j in orig[k].__code__.co_names}
                for k in kernels}
        callers = {k: {j for j in kernels if k in _closure(refs, j)} for k in kernels}
        target = None
        if act_mod == modname:
            for k in kernels:
                if re.fullmatch(rf"x_{re.escape(k)}__mutmut_\d+", act_name):
                    target = k
        key = act_name if target else "orig"
        if _ACTIVE.get(modname) == key:
            continue
        rebuilt = ({target} | callers[target]) if target else set()
        g = dict(vars(mod))
        disp = {}
        for k, opts in kernels.items():
            variant = act_name if k == target else "orig"
            cache_key = (modname, k, "orig" if k not in rebuilt else key)
            if cache_key not in _DISPATCHERS:
                fn = getattr(mod, act_name) if k == target else orig[k]
                f2 = types.FunctionType(fn.__code__, g, fn.__name__, fn.__defaults__,
                                        fn.__closure__)
                f2.__module__ = modname
                # JSON has no sets: fastmath={"contract"} travels as a list
                jit = {k: set(v) if k == "fastmath" and isinstance(v, list) else v
                       for k, v in opts.items()}
                _DISPATCHERS[cache_key] = numba.njit(**{**jit, "cache": False})(f2)
            disp[k] = (_DISPATCHERS[cache_key], variant)
        g.update({k: d for k, (d, _) in disp.items()})

        for k, (d, variant) in disp.items():
            mdict = getattr(mod, f"mutants_x_{k}__mutmut")
            hits = [f"{modname}.x_{j}" for j in _closure(refs, k)]

            def entry(*args, _d=d, _hits=hits, **kwargs):
                if _hits and get_mutant_under_test() == "stats":
                    for h in _hits:  # kernels it calls: credit them with this test
                        record_trampoline_hit(h)
                return _d(*args, **kwargs)

            entry.__name__ = f"x_{k}__mutmut_orig" if variant == "orig" else act_name
            entry.__module__ = modname
            if variant == "orig":
                mdict["_mutmut_orig"] = entry
            else:
                mdict[act_name] = entry  # '_mutmut_orig' keeps the original's entry
        _ACTIVE[modname] = key


def pytest_configure(config) -> None:  # noqa: ARG001 - pytest hook
    if os.environ.get(KERNELS_ENV):
        install_kernels()


if __name__ == "__main__":
    sys.exit(main())
