"""Transports: where finished messages go. ``make_transport`` is the one place that wires them."""

from __future__ import annotations

from newsletter.config import Settings
from newsletter.transports.base import Envelope, Quota, Transport

__all__ = ["Envelope", "Quota", "Transport", "make_transport"]


def make_transport(settings: Settings, name: str | None = None) -> Transport:
    """The transport named (default: the configured one). boto3 is imported only for SES."""
    chosen = name or settings.transport
    if chosen == "outbox":
        from newsletter.transports.outbox import OutboxTransport

        return OutboxTransport(settings.outbox_dir)
    if chosen == "ses":
        from newsletter.transports.ses import SesTransport

        return SesTransport.from_settings(settings)
    raise ValueError(f"unknown transport {chosen!r}")
