#!/usr/bin/python3
"""A passthrough FUSE filesystem for tests/fencing.rs: `freezable_fs.py
BACKING_DIR MOUNTPOINT` serves BACKING_DIR's files at MOUNTPOINT, in the
foreground, one request at a time, without a writeback cache (every write
reaches this process). SIGSTOP freezes it: every I/O through the mount,
such as a loop device's over a file here, then waits in the kernel (D
state) until SIGCONT. Ends when the mount is unmounted."""
import os
import sys

from fusepy import FUSE, FuseOSError, Operations


class Passthrough(Operations):
    def __init__(self, root):
        self.root = root

    def _path(self, path):
        return os.path.join(self.root, path.lstrip('/'))

    def getattr(self, path, fh=None):
        try:
            st = os.lstat(self._path(path))
        except OSError as e:
            raise FuseOSError(e.errno)
        keys = ('st_mode', 'st_nlink', 'st_size', 'st_uid', 'st_gid', 'st_atime', 'st_mtime', 'st_ctime')
        return {k: getattr(st, k) for k in keys}

    def readdir(self, path, fh):
        return ['.', '..'] + os.listdir(self._path(path))

    def open(self, path, flags):
        return os.open(self._path(path), flags & ~os.O_DIRECT)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        os.truncate(self._path(path), length)

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        os.fsync(fh)

    def release(self, path, fh):
        os.close(fh)


if __name__ == '__main__':
    FUSE(Passthrough(sys.argv[1]), sys.argv[2], foreground=True, nothreads=True)
