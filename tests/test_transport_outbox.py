"""The outbox transport: one ``.eml`` file per message, written atomically."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.errors import FatalTransportError
from newsletter.transports.base import Envelope
from newsletter.transports.outbox import OutboxTransport

RAW = b"From: news@example.org\r\nTo: reader@example.net\r\nSubject: Hi\r\n\r\nHello\r\n"


def envelope(key: str = "42", issue: str = "2025-04-asit-highlights") -> Envelope:
    return Envelope("news@example.org", "reader@example.net", issue, key)


def test_writes_one_eml_per_message_and_returns_its_name(tmp_path: Path) -> None:
    with OutboxTransport(tmp_path) as outbox:
        name = outbox.send(RAW, envelope())
    assert name == "42.eml"
    folder = tmp_path / "2025-04-asit-highlights"
    assert [p.name for p in folder.iterdir()] == ["42.eml"]  # no temporary file left behind
    assert (folder / name).read_bytes() == RAW


def test_the_same_key_overwrites_idempotently(tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path)
    outbox.send(b"first", envelope())
    assert outbox.send(RAW, envelope()) == "42.eml"
    folder = tmp_path / "2025-04-asit-highlights"
    assert [p.name for p in folder.iterdir()] == ["42.eml"]
    assert (folder / "42.eml").read_bytes() == RAW


def test_keys_and_slugs_cannot_leave_the_outbox(tmp_path: Path) -> None:
    name = OutboxTransport(tmp_path).send(RAW, envelope("../../etc/x", "../up"))
    assert name == ".._.._etc_x.eml"
    assert (tmp_path / ".._up" / name).read_bytes() == RAW


def test_an_unwritable_target_stops_the_send(tmp_path: Path) -> None:
    # A directory where the file must go: unwritable even for root, which ignores chmod.
    (tmp_path / "2025-04-asit-highlights" / "42.eml").mkdir(parents=True)
    with pytest.raises(FatalTransportError, match=r"42\.eml"):
        OutboxTransport(tmp_path).send(RAW, envelope())
    assert sorted(p.name for p in (tmp_path / "2025-04-asit-highlights").iterdir()) == ["42.eml"]


def test_an_outbox_dir_that_is_a_file_stops_the_send(tmp_path: Path) -> None:
    (tmp_path / "outbox").write_text("not a folder")
    with pytest.raises(FatalTransportError):
        OutboxTransport(tmp_path / "outbox").send(RAW, envelope())
