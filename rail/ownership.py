"""The data directory stays the service user's when twistd starts as root with ``--uid``.

twistd builds the service tree and binds the listeners as root, and only then drops to
``--uid``/``--gid``. What Rail creates under ``data_dir`` before that (the CA, the CRL, the
server certificate, DKIM keys, the webhook key, the queue database and its WAL files, the
registry) would stay root's, and the unprivileged server, or the next start, could not
write it. :class:`HandOver` runs last in the privileged start and gives every such entry
to the user twistd is about to become.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from twisted.application.service import Service
from twisted.logger import Logger

__all__ = ["HandOver", "hand_over", "target_ids"]

_log = Logger()


def target_ids(uid: int | None, gid: int | None) -> tuple[int, int] | None:
    """The (uid, gid) twistd will switch to, given its ``--uid`` and ``--gid``: the gid
    defaults to the user's primary group, as twistd does. ``None`` when neither is set."""
    if uid is None and gid is None:
        return None
    if uid is None:
        uid = os.getuid()
    if gid is None:
        gid = pwd.getpwuid(uid).pw_gid
    return uid, gid


def hand_over(data_dir: Path, uid: int, gid: int, owner: int | None = None) -> int:
    """Give ``data_dir`` and everything under it that ``owner`` (default: this process's
    effective uid) owns to ``uid``:``gid``, without following symbolic links. Entries of
    other users are left alone. Returns how many entries changed owner."""
    if owner is None:
        owner = os.geteuid()
    if not data_dir.exists():
        return 0
    changed = 0
    paths = [data_dir]
    for root, directories, files in os.walk(data_dir):
        paths.extend(Path(root, name) for name in (*directories, *files))
    for path in paths:
        status = path.lstat()
        if status.st_uid == owner and (status.st_uid, status.st_gid) != (uid, gid):
            os.lchown(path, uid, gid)
            changed += 1
    return changed


class HandOver(Service):
    """Added last to the tree, so its privileged start runs after everything else's."""

    name = "ownership"

    def __init__(self, data_dir: Path, uid: int, gid: int) -> None:
        self.data_dir = data_dir
        self.uid = uid
        self.gid = gid

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if os.geteuid() != 0 or self.uid == 0:
            return
        changed = hand_over(self.data_dir, self.uid, self.gid)
        _log.info(
            "{data_dir}: {changed} entries created as root given to uid/gid {uid}/{gid}",
            data_dir=str(self.data_dir),
            changed=changed,
            uid=self.uid,
            gid=self.gid,
        )
