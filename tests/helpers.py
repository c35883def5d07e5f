"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import socketserver
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

from newsletter.authoring.content import Issue, load_issue
from newsletter.config import Settings
from newsletter.transports.base import Envelope, Transport


@contextlib.contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[None]:
    """Run ``server`` in a thread for the duration; shut it down and close it after."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def write_issue(root: Path, slug: str, text: str) -> Path:
    """Write ``issues/<slug>/issue.md`` (dedented) and return the folder."""
    folder = root / "issues" / slug
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "issue.md").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return folder


def load(root: Path, slug: str, text: str, settings: Settings) -> Issue:
    return load_issue(write_issue(root, slug, text), settings)


class Recording(Transport):
    """A transport that remembers every message handed to it, and can fail on cue."""

    name = "recording"

    def __init__(self, fail=None, quota=None):
        self.sent: list[tuple[str, bytes]] = []
        self.calls: dict[str, int] = {}
        self.fail = fail or (lambda envelope, call: None)
        self._quota = quota
        self._lock = threading.Lock()

    def send(self, raw, envelope: Envelope) -> str:
        with self._lock:
            call = self.calls[envelope.recipient] = self.calls.get(envelope.recipient, 0) + 1
        error = self.fail(envelope, call)
        if error:
            raise error
        with self._lock:
            self.sent.append((envelope.recipient, raw))
            return f"id-{len(self.sent)}"

    def quota(self):
        return self._quota

    def recipients(self):
        return sorted(recipient for recipient, _ in self.sent)
