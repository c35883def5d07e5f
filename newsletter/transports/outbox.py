"""The outbox transport: every message becomes an ``.eml`` file, no account needed.

The default transport, used by the demo and the tests. Files land as
``<outbox_dir>/<issue>/<key>.eml``; each is written to a temporary name and renamed, so a crash
never leaves half a message that looks whole.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from newsletter.errors import FatalTransportError
from newsletter.transports.base import Envelope, Transport

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class OutboxTransport(Transport):
    name = "outbox"

    def __init__(self, directory: Path):
        self.directory = directory

    def send(self, raw: bytes, envelope: Envelope) -> str:
        folder = self.directory / _SAFE.sub("_", envelope.issue)
        name = _SAFE.sub("_", envelope.key) + ".eml"
        temporary = folder / f".{name}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            temporary.write_bytes(raw)
            os.replace(temporary, folder / name)
        except OSError as error:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            # A full disk or an unwritable folder fails every message alike: stop the send.
            raise FatalTransportError(f"cannot write {folder / name}",
                                      detail=str(error)) from error
        return name

    def __repr__(self) -> str:
        return f"OutboxTransport({self.directory})"
