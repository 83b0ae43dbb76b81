"""Atomic file writing and Parquet helpers shared by every lcpipe writer.

Every file lcpipe writes goes first to a temporary name in the same
directory and is then renamed over the target, so a killed run never leaves
a half-written file behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import OutputError

__all__ = [
    "protect_inputs",
    "check_output",
    "check_place",
    "atomic_path",
    "atomic_dir",
    "write_parquet_atomic",
    "write_json_atomic",
    "ParquetStreamWriter",
    "read_json_metadata",
]


#: Temporary files and folders of writes in progress, registered before they exist; any
#: still there when the interpreter exits is removed. A KeyboardInterrupt can land between
#: creating one and entering the block that removes it on failure (inside the creation
#: call, or between a context manager's ``__enter__`` and its body); this catches those.
_PENDING: set[Path] = set()


def _remove_pending() -> None:
    """Remove the temporary paths of writes that never finished (run at exit)."""
    for p in list(_PENDING):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
        _PENDING.discard(p)


atexit.register(_remove_pending)


def _new_temp(final: Path, suffix: str, folder: bool) -> Path:
    """Create a hidden temporary file (mode 0600) or folder (0700) beside ``final``,
    registered in ``_PENDING`` before it exists."""
    for _ in range(100):
        p = final.parent / f".{final.name}.{secrets.token_hex(6)}{suffix}"
        _PENDING.add(p)
        try:
            if folder:
                os.mkdir(p, 0o700)
            else:
                os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return p
        except FileExistsError:  # not ours; anything else (an interrupt just after the
            _PENDING.discard(p)  # call made it) leaves p registered for the exit
    raise FileExistsError(f"no free temporary name beside {final}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Parameters
    ----------
    path : path-like
        Final destination. Its parent directory is created if needed.
    fsync : bool
        Flush the file to disk before the rename (models: they must survive a power cut).

    Yields
    ------
    Path
        Temporary file name to write to. It is removed if the block raises.
    """
    final = Path(path)
    check_output(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(final, f"cannot create its folder: {exc.strerror or exc}") from exc
    try:
        tmp_path = _new_temp(final, ".tmp", folder=False)
    except OSError as exc:
        raise OutputError(final, f"cannot write there: {exc.strerror or exc}") from exc
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # created 0600; use the usual mode
        if fsync:
            _fsync(tmp_path)
        os.replace(tmp_path, final)
        if fsync:
            _fsync(final.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
    finally:
        _PENDING.discard(tmp_path)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str],
               replaceable: Callable[[Path], str | None]) -> Iterator[Path]:
    """Yield a temporary folder next to ``path``; put it at ``path`` in one step on success.

    An existing folder at ``path`` is replaced as a unit: on Linux the two folders are
    swapped by one ``renameat2(RENAME_EXCHANGE)`` call, so a kill at any moment leaves
    either the old folder or the new one, complete. Elsewhere the old folder is moved
    aside first (a kill between the two renames leaves it under a hidden name).
    Everything in the new folder is flushed to disk before the swap.

    Parameters
    ----------
    path : path-like
        Final folder. Its parent is created if needed.
    replaceable : callable
        Called with an existing ``path``; returns None if it may be replaced, otherwise
        the reason it may not (e.g. it holds files lcpipe did not write).

    Yields
    ------
    Path
        Temporary folder to fill. It is removed if the block raises.
    """
    final = Path(path)
    if final.exists() or final.is_symlink():
        if not final.is_dir():
            raise OutputError(final, "exists and is not a folder: choose another output")
        why = replaceable(final)
        if why is not None:
            raise OutputError(final, why)
        for f in final.rglob("*"):
            if f.is_file():
                check_output(f)  # replacing the folder must not delete an input
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_temp(final, ".tmp", folder=True)
    except OSError as exc:
        raise OutputError(final, f"cannot write there: {exc.strerror or exc}") from exc
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        for f in sorted(tmp.rglob("*")):
            _fsync(f)
        _fsync(tmp)
        if final.is_dir() and _exchange(tmp, final):
            shutil.rmtree(tmp)  # now the old folder
        elif final.is_dir():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old",
                                        dir=final.parent))
            os.replace(final, old / "x")
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
        _fsync(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        _PENDING.discard(tmp)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _fsync(path: Path) -> None:
    """Flush a file or a folder entry list to disk (best effort on folders)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync folders
    finally:
        os.close(fd)


#: (device, inode) of the files the running command reads: never written over
_PROTECTED: dict[tuple[int, int], str] = {}


@contextlib.contextmanager
def protect_inputs(paths: list[str | os.PathLike[str]]) -> Iterator[None]:
    """Inside, :func:`atomic_path` refuses to write over any of a command's inputs.

    Files are identified by device and inode, so a symbolic or hard link to an input is
    refused too; a folder protects every file in it.
    """
    added = []
    for p in map(Path, paths):
        try:
            files = [p] if not p.is_dir() else [f for f in p.rglob("*") if f.is_file()]
            for f in files:
                st = f.stat()
                key = (st.st_dev, st.st_ino)
                if key not in _PROTECTED:
                    _PROTECTED[key] = str(p)
                    added.append(key)
        except OSError:
            continue  # missing or unreadable: the command reports it when it reads
    try:
        yield
    finally:
        for key in added:
            _PROTECTED.pop(key, None)


def check_output(path: str | os.PathLike[str]) -> None:
    """Raise OutputError if ``path`` is an existing folder or one of the protected inputs."""
    final = Path(path)
    if final.is_dir():
        raise OutputError(final, "is an existing folder: give a file name")
    try:
        st = final.stat()
    except OSError:
        return
    owner = _PROTECTED.get((st.st_dev, st.st_ino))
    if owner is not None:
        raise OutputError(final, f"is an input of this command ({owner}): writing it would "
                          "destroy it; choose another output")


def check_place(path: str | os.PathLike[str]) -> None:
    """Raise OutputError if ``path`` (a file or a folder to create) cannot be written: a
    file stands where a folder above it would go, or the nearest existing folder above
    it is not writable. Nothing is created."""
    final = Path(path).absolute()
    for up in final.parents:
        if up.exists():
            if not up.is_dir():
                raise OutputError(path, f"cannot create its folder: {up} is a file")
            if not os.access(up, os.W_OK | os.X_OK):
                raise OutputError(path, f"cannot write there: {up} is not writable")
            return


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _with_metadata(schema: pa.Schema, metadata: dict[str, Any] | None) -> pa.Schema:
    if not metadata:
        return schema
    extra = {
        k.encode(): (v if isinstance(v, str) else json.dumps(v)).encode()
        for k, v in metadata.items()
    }
    merged = dict(schema.metadata or {})
    merged.update(extra)
    return schema.with_metadata(merged)


def write_parquet_atomic(
    table: pa.Table,
    path: str | os.PathLike[str],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write an Arrow table to Parquet atomically.

    Parameters
    ----------
    table : pyarrow.Table
        Data to write.
    path : path-like
        Destination file.
    metadata : dict, optional
        Extra file-level key/value metadata; non-string values are stored as JSON.

    Returns
    -------
    Path
        The destination path.
    """
    table = table.replace_schema_metadata(_with_metadata(table.schema, metadata).metadata)
    # dictionary encoding for the text columns only: tried on float columns it costs a
    # third of the write time and the file gets larger
    text = [f.name for f in table.schema
            if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
            or pa.types.is_dictionary(f.type)]
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", use_dictionary=text or False)
    return Path(path)


def write_json_atomic(obj: Any, path: str | os.PathLike[str], *, fsync: bool = False) -> Path:
    """Write ``obj`` as indented JSON atomically and return the path."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    return Path(path)


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class ParquetStreamWriter:
    """Write a Parquet file chunk by chunk, atomically.

    Use as a context manager; the file appears under its final name only when
    the block exits without error.

    Parameters
    ----------
    path : path-like
        Destination file.
    schema : pyarrow.Schema
        Schema of every chunk.
    metadata : dict, optional
        File-level key/value metadata (non-string values stored as JSON).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: pa.Schema,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.schema = _with_metadata(schema, metadata)
        self._ctx: contextlib.AbstractContextManager[Path] | None = None
        self._writer: pq.ParquetWriter | None = None
        self.n_rows = 0

    def __enter__(self) -> ParquetStreamWriter:
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self._writer = pq.ParquetWriter(tmp, self.schema, compression="zstd")
        return self

    def write(self, table: pa.Table) -> None:
        """Append one chunk (cast to the writer's schema)."""
        assert self._writer is not None, "use ParquetStreamWriter as a context manager"
        if table.num_rows == 0:
            return
        table = table.cast(self.schema.remove_metadata()).replace_schema_metadata(
            self.schema.metadata
        )
        self._writer.write_table(table)
        self.n_rows += table.num_rows

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self._writer is not None and self._ctx is not None
        self._writer.close()
        self._ctx.__exit__(exc_type, exc, tb)
        return False


def read_json_metadata(path: str | os.PathLike[str], key: str) -> Any:
    """Return the JSON value stored under ``key`` in a Parquet file's metadata.

    Raises
    ------
    InputError
        If the file cannot be read or has no such key.
    """
    from .errors import InputError

    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        raise InputError(path, f"cannot read Parquet metadata ({exc})") from exc
    raw = meta.get(key.encode())
    if raw is None:
        raise InputError(path, f"no '{key}' metadata: not a file written by this lcpipe step")
    return json.loads(raw)
