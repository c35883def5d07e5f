"""One line of ``newsletter ses doctor``: what was checked, how it stands, and how to fix it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Verdict = Literal["ok", "warn", "fail"]
OK: Verdict = "ok"
WARN: Verdict = "warn"
FAIL: Verdict = "fail"
MARKS = {OK: "✓", WARN: "!", FAIL: "✗"}


@dataclass(frozen=True)
class Check:
    """``id`` is stable for scripts ("dkim", "dns-dmarc"); ``fix`` is empty when all is well."""

    id: str
    status: Verdict
    message: str
    fix: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        line = f"{MARKS[self.status]} {self.id}: {self.message}"
        return f"{line}\n    fix: {self.fix}" if self.fix else line
