"""How exports place their files (docs/portability.md, "From Python"):
each is written under a temporary name in the directory, synced, then
linked to its name, which must not exist (ALREADY_EXISTS); on any error
none of them is left, nor a directory the export made. Errors are the
status exceptions the binding raises (status_error), so that a torch export
fails as a safetensors one does.
"""

import errno
import os
import secrets

from ckpt import _ckpt


def status_error(code, message):
    """The exception the binding raises for a status `code` ("NOT_FOUND",
    ...): KeyError, ValueError (INVALID_ARGUMENT) or ckpt.Error, with
    `.code` and `.message`, so that both formats fail alike."""
    kind = {"INVALID_ARGUMENT": ValueError, "NOT_FOUND": KeyError}.get(
        code, _ckpt.Error)
    error = kind(f"{code}: {message}")
    error.code, error.message = code, message
    return error


def check_free(directory, names):
    """Refuses, before anything is read, a directory that cannot be made
    or written, or that holds a file of one of `names` already."""
    existing = directory
    while not os.path.lexists(existing):
        parent = os.path.dirname(os.path.abspath(existing))
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        raise status_error(
            "FAILED_PRECONDITION", f"export: {existing} is not a directory, "
            f"so {directory} cannot be one; nothing was written")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise status_error(
            "PERMISSION_DENIED",
            f"export: cannot write in {existing}; nothing was written")
    for name in names:
        target = os.path.join(directory, name)
        if os.path.lexists(target):
            raise status_error(
                "ALREADY_EXISTS",
                f"export: {target} exists already; nothing was written")


def _make_directories(directory):
    """Makes `directory` and its missing parents; returns those it made,
    deepest first."""
    made = []
    path = os.path.abspath(directory)
    while not os.path.lexists(path):
        made.append(path)
        path = os.path.dirname(path)
    for path in reversed(made):
        try:
            os.mkdir(path)
        except FileExistsError:  # made meanwhile by someone else: theirs
            made.remove(path)
    return made


def _temporary_file(directory, name):
    """(fd, path) of a new file for `name` in `directory`, created
    exclusively with the permissions a plain open() gives (umask applied,
    unlike mkstemp's 0600)."""
    while True:
        path = os.path.join(directory,
                            f".{name}.{secrets.token_hex(6)}.partial")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                           getattr(os, "O_CLOEXEC", 0), 0o666), path
        except FileExistsError:
            continue


def write_files(directory, files, before_placing=None):
    """Writes [(name, write(binary file))] into `directory` (made if
    absent): each under a temporary name, synced, then (after
    before_placing(), when given) linked to its name, which must not
    exist. On an error no file of them remains, nor a directory it made."""
    temps, placed, made = [], [], []
    try:
        made = _make_directories(directory)
        for name, write in files:
            fd, temp = _temporary_file(directory, name)
            temps.append(temp)
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
        if before_placing is not None:
            before_placing()
        for (name, _), temp in zip(files, temps):
            target = os.path.join(directory, name)
            _place_file(temp, target)
            placed.append(target)
        _sync_directory(directory)
    except BaseException as error:
        for path in placed + temps:
            _unlink(path)
        temps = []
        for path in made:
            try:
                os.rmdir(path)
            except OSError:
                break
        if isinstance(error, OSError):
            raise os_error("export", directory, error) from error
        raise
    finally:
        for temp in temps:
            _unlink(temp)


def _place_file(temp, target):
    """Gives `temp` the name `target`, never replacing a file there."""
    try:
        os.link(temp, target)
    except FileExistsError:
        raise status_error(
            "ALREADY_EXISTS",
            f"export: {target} exists already; nothing was written") from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP,
                               errno.EXDEV, errno.EMLINK):
            raise
        # No hard links here (some network and FUSE file systems).
        if os.path.lexists(target):
            raise status_error(
                "ALREADY_EXISTS",
                f"export: {target} exists already; nothing was "
                "written") from None
        os.rename(temp, target)


def _sync_directory(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def os_error(verb, path, error):
    """A local file error as the status error the C++ side gives."""
    code = "PERMISSION_DENIED" if isinstance(error, PermissionError) else \
        "FAILED_PRECONDITION"
    return status_error(code, f"{verb}: {path}: {error.strerror or error}")
