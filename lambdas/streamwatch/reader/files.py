"""Writing a dataset under a folder: safe names only (no `..`, no hidden or control characters), every folder
opened without following symlinks, files written under a temp name and renamed (`FileSink`)."""

from __future__ import annotations

import errno
import os
import re
import threading
import uuid
from collections import OrderedDict
from pathlib import Path

from streamwatch.reader.objects import Sink


class FileSink(Sink):
    """temp file next to the target, renamed on success: a reader never sees a partial file. Takes any buffer
    (obstore's Bytes too: no copy into a Python bytes first). With `dir_fd` (a directory opened without following
    symlinks) the names are relative to it and the temp file is opened with O_NOFOLLOW; without `overwrite` the
    commit links the file in and fails if the name exists (FileExistsError), so an existing file is never
    replaced. The sink owns `dir_fd` (closed when it ends); `shown` is the path its result reports."""

    positional = True

    def __init__(self, path: str | Path, *, dir_fd: int | None = None, overwrite: bool = True,
                 shown: str | None = None) -> None:
        self.path, self.dir_fd, self.overwrite = os.fspath(path), dir_fd, overwrite
        self.shown = shown or self.path
        head, tail = os.path.split(self.path)
        self.tmp = os.path.join(head, f".{tail}.{uuid.uuid4().hex}.part")
        self.fd: int | None = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                                      0o666, dir_fd=dir_fd)

    def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            view = view[os.write(self.fd, view):]

    def allocate(self, size: int) -> None:
        """Reserve the whole file first: a full disk fails the object now, not after most of it arrived."""
        try:
            os.posix_fallocate(self.fd, 0, size)
        except OSError as exc:
            if exc.errno not in (95, 22):  # EOPNOTSUPP / EINVAL: a file system without fallocate
                raise
            os.ftruncate(self.fd, size)

    def write_at(self, offset: int, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            written = os.pwrite(self.fd, view, offset)
            view, offset = view[written:], offset + written

    def commit(self) -> dict:
        self._close()
        try:
            if self.overwrite:
                os.replace(self.tmp, self.path, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            else:
                self._commit_new()
        finally:
            self._close_dir()
        return {"path": self.shown}

    def _commit_new(self) -> None:
        """Link the file in (fails if the name exists). A file system without hard links (FAT, some FUSE and
        SMB mounts): claim the name with O_EXCL first, then rename over that claim."""
        try:
            try:
                os.link(self.tmp, self.path, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                    raise
                claim = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                0o666, dir_fd=self.dir_fd)  # FileExistsError: an existing file stays as it was
                os.close(claim)
                os.replace(self.tmp, self.path, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        finally:
            try:
                os.unlink(self.tmp, dir_fd=self.dir_fd)
            except FileNotFoundError:  # renamed into place
                pass

    def abort(self) -> None:
        self._close()
        try:
            os.unlink(self.tmp, dir_fd=self.dir_fd)
        except FileNotFoundError:
            pass
        finally:
            self._close_dir()

    def _close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def _close_dir(self) -> None:
        if self.dir_fd is not None:
            fd, self.dir_fd = self.dir_fd, None
            os.close(fd)


# A key's path components a reader writes to disk (README: security model): no leading dot (.git, .ssh, .bashrc),
# no backslash, colon, NUL or control character (Windows paths, alternate streams), each short enough to leave room
# for the temp suffix (".<name>.<32 hex>.part") within the file system's 255 bytes.
SAFE_COMPONENT = re.compile(r"[A-Za-z0-9_+=@,~-][A-Za-z0-9_.+=@,~ -]*")
MAX_COMPONENT_BYTES = 255 - len(".." + "0" * 32 + ".part")
MAX_PATH_BYTES = 4000


def unsafe_name(relative: str) -> str | None:
    """Why a key (relative to the dataset's prefix) may not become a file, or None if it may."""
    parts = relative.split("/")
    if not relative or relative.endswith("/"):
        return "a folder marker, not a file"
    if len(relative.encode()) > MAX_PATH_BYTES:
        return "the path is too long"
    for part in parts:
        if part in ("", ".", ".."):
            return f"an empty, '.' or '..' path component in {relative!r}"
        if not SAFE_COMPONENT.fullmatch(part):
            return f"component {part[:60]!r} is not a safe file name (no leading dot, no \\ : NUL or control " \
                   "characters)"
        if len(part.encode()) > MAX_COMPONENT_BYTES:
            return f"component {part[:40]!r}... is longer than {MAX_COMPONENT_BYTES} bytes"
    return None


class UnsafeTarget(ValueError):
    """The directory to write into is not empty (and --overwrite was not given), or is not a directory."""


def check_target(root: str | Path, *, overwrite: bool = False) -> None:
    """Refuse a target that is a file, a symlink, or a non-empty directory without `overwrite`."""
    path = Path(root)
    if path.is_symlink():
        raise UnsafeTarget(f"{root} is a symlink: give the directory itself")
    if path.exists() and not path.is_dir():
        raise UnsafeTarget(f"{root} is not a directory")
    if path.is_dir() and not overwrite and any(path.iterdir()):
        raise UnsafeTarget(f"{root} is not empty: give an empty or new directory, or --overwrite to add to it "
                           "(existing files are then replaced, symlinks never followed)")


class _FilesUnder:
    """Sink factory: key -> file under root, relative to the dataset prefix. Only safe names (`unsafe_name`), and
    every directory is opened relative to the root with O_NOFOLLOW, so a symlink inside the target is never
    followed; without `overwrite` an existing file is never replaced."""

    positional = True

    def __init__(self, root: str | Path, prefix: str, *, overwrite: bool = False) -> None:
        self.root, self.prefix, self.overwrite = os.path.abspath(root), prefix, overwrite
        os.makedirs(self.root, exist_ok=True)
        self._dirs: OrderedDict[tuple[str, ...], int] = OrderedDict({(): os.open(self.root, _DIR_FLAGS)})
        self._lock = threading.Lock()

    def relative(self, key: str) -> str:
        return key[len(self.prefix):] if key.startswith(self.prefix) else key

    def refuse(self, key: str) -> str | None:
        return unsafe_name(self.relative(key))

    def __call__(self, key: str) -> Sink:
        reason = self.refuse(key)
        if reason:
            raise UnsafeName(reason)
        relative = self.relative(key)
        *folders, name = relative.split("/")
        return FileSink(name, dir_fd=self._dir(tuple(folders)), overwrite=self.overwrite,
                        shown=os.path.join(self.root, relative))

    def _dir(self, folders: tuple[str, ...]) -> int:
        """A descriptor of its own for the folder (the sink closes it). Folders opened are kept for the next
        object, the most recent OPEN_FOLDERS of them, so a dataset of many folders never runs out of
        descriptors."""
        with self._lock:
            return os.dup(self._dir_locked(folders))

    def _dir_locked(self, folders: tuple[str, ...]) -> int:
        fd = self._dirs.get(folders)
        if fd is not None:
            self._dirs.move_to_end(folders)
            return fd
        parent = self._dir_locked(folders[:-1])
        try:
            os.mkdir(folders[-1], 0o777, dir_fd=parent)
        except FileExistsError:
            pass
        fd = os.open(folders[-1], _DIR_FLAGS, dir_fd=parent)  # ELOOP on a symlink
        self._dirs[folders] = fd
        while len(self._dirs) > OPEN_FOLDERS:
            oldest = next(k for k in self._dirs if k and k != folders and k != folders[:-1])
            os.close(self._dirs.pop(oldest))
        return fd

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()


class UnsafeName(ValueError):
    """A key the reader will not write as a file (reported for that object)."""


OPEN_FOLDERS = 64
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
