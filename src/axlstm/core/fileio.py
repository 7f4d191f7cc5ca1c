"""Files in and out, safely.

* :func:`check_input_file` refuses, by name and before any byte is read, anything that is not
  a readable regular file: a folder, a named pipe (which would block a reader forever), a
  device, a socket, a broken link or a symbolic-link loop.
* :func:`check_output_file` and :func:`check_output_dir` find out before long work starts that
  an output cannot be written (a read-only folder, a path under a file, a folder where a file
  should go), by creating the folder and a probe file in it; :func:`new_output_dir` also
  removes the folders it created when the work then fails.
* :func:`atomic_write` writes through a temporary file in the target's folder, renamed over
  the target (``os.replace`` is atomic on POSIX and Windows): a crash mid-write never leaves a
  half-written file. The file gets the permissions of a plain ``open(path, "w")`` (0666 less
  the process umask), so what one user writes others may read as the umask allows.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from axlstm.core.errors import InputError, OutputError

__all__ = [
    "atomic_write",
    "atomic_write_text",
    "check_input_file",
    "check_output_dir",
    "check_output_file",
    "disk_full",
    "file_kind",
    "new_output_dir",
]


def file_kind(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words ("a named pipe (FIFO)", "a folder")."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_input_file(
    path: str | os.PathLike[str],
    what: str = "file",
    error: type[Exception] = InputError,
) -> os.stat_result:
    """Check that ``path`` is a readable regular file, without reading it.

    Args:
        path: the file.
        what: what the file is, for messages ("audio file", "checkpoint").
        error: the error class raised for a path that exists but cannot be used.

    Returns:
        The file's ``os.stat`` result (symbolic links followed).

    Raises:
        FileNotFoundError: nothing is there (``"{what} not found: {path}"``).
        error: a folder, a named pipe, a device or a socket, a broken symbolic link, a link
            loop or a file this process may not read; the message names the path.
    """
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except FileNotFoundError:
        if os.path.islink(name):
            raise error(
                f"cannot read {what} {name}: broken symbolic link (to {os.readlink(name)})"
            ) from None
        raise FileNotFoundError(f"{what} not found: {name}") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise error(f"cannot read {what} {name}: symbolic link loop") from None
        raise error(f"cannot read {what} {name}: {err.strerror or err}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = file_kind(st.st_mode)
        raise error(f"cannot read {what} {name}: it is {kind}, not a regular file")
    if not os.access(name, os.R_OK):
        raise error(f"cannot read {what} {name}: permission denied")
    return st


def _writable_dir(directory: Path, target: Path, what: str) -> None:
    """Create ``directory`` if needed and prove that a file can be created in it."""
    existing = directory
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if os.path.lexists(existing) and not existing.is_dir():
        raise OutputError(f"cannot write {what} {target}: {existing} is a file, not a folder")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(
            f"cannot write {what} {target}: cannot create the folder {directory} "
            f"({err.strerror or err})"
        ) from None
    probe = directory / f".axlstm-write-test-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as err:
        raise OutputError(
            f"cannot write {what} {target}: the folder {directory} is not writable "
            f"({err.strerror or err})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: str | os.PathLike[str], what: str = "output") -> Path:
    """Check, before work starts, that the file ``path`` can be written; create its folder.

    Raises:
        OutputError: ``path`` is a folder or a special file, lies under a file, or its folder
            cannot be created or written.
    """
    path = Path(path)
    if os.path.lexists(path):
        try:
            mode = os.stat(path).st_mode
        except OSError as err:
            raise OutputError(f"cannot write {what} {path}: {err.strerror or err}") from None
        if not stat.S_ISREG(mode):
            raise OutputError(f"cannot write {what} {path}: it is {file_kind(mode)}; name a file")
    _writable_dir(path.parent, path, what)
    return path


def check_output_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Check, before work starts, that files can be written in the folder ``path``; create it.

    Raises:
        OutputError: ``path`` is a file, lies under a file, or cannot be created or written.
    """
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise OutputError(f"cannot write {what} {path}: it is a file, not a folder")
    _writable_dir(path, path, what)
    return path


@contextmanager
def new_output_dir(path: Path, what: str) -> Iterator[Path]:
    """Check before the work that files can be written in the folder ``path`` (creating it);
    if the work then fails, remove the folders the check created while they are still empty,
    so that a failed command leaves nothing behind.

    Raises:
        OutputError: ``path`` is a file, lies under a file, or cannot be created or written.
    """
    created = []
    for folder in (path, *path.parents):
        if os.path.lexists(folder):
            break
        created.append(folder)  # deepest first
    check_output_dir(path, what)
    try:
        yield path
    except BaseException:
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def disk_full(folder: str | os.PathLike[str], err: BaseException | None = None) -> bool:
    """Whether a write into ``folder`` failed for want of space: the error says so (an
    ``ENOSPC``/``EDQUOT`` errno, or libraries' "No space left" texts), or the file system
    has less than 64 KiB free."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if err is not None and "no space left" in str(err).lower():
        return True
    try:
        return shutil.disk_usage(folder).free < 64 * 1024
    except OSError:
        return False


def atomic_write(path: str | Path, write: Callable[[str], None], fsync: bool = False) -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file, then rename it over ``path``.

    The file gets the permissions of a plain ``open(path, "w")`` (0666 less the umask), also
    when ``write`` replaces the temporary file with one of its own (as some writers do).

    Args:
        path: the file to (re)place; its folder is created if needed.
        write: writes the content to the path it is given.
        fsync: flush the file to disk before the rename (for checkpoints that must survive a
            power loss, not only a crash of the process).

    Raises:
        OutputError: the file cannot be written (the message names it and says why, e.g. a
            read-only folder or a full disk, whatever library did the writing); nothing is
            left behind.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created with 0666 so that the umask, not mkstemp's 0600, decides the permissions.
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        os.close(fd)
        write(str(tmp))
        os.chmod(tmp, mode)  # the writer may have made a new file (e.g. safetensors: 0600)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OutputError:
        raise
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from err
    except Exception as err:
        # torch, safetensors and libsndfile report a full disk as their own errors
        if disk_full(path.parent, err):
            raise OutputError(f"cannot write {path}: no space left on device") from err
        raise
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
