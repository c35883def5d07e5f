"""The bounce and complaint rates that get an SES account reviewed or paused, and verdicts on them.

One place for every threshold: the report shows them, ``send`` and ``status`` warn past the
review ones, and the scheduler holds the next issue past a pause one.

Amazon SES looks at an account's rates over a representative volume of its recent sending, not
at one issue: an issue's rate is the best early sign we have, not SES's own figure. Its bounce
rate counts hard (permanent) bounces only; both rates are per message sent.
https://docs.aws.amazon.com/ses/latest/dg/reputationdashboardmessages.html
Gmail asks bulk senders to keep the spam rate its users report below 0.3%:
https://support.google.com/a/answer/81126
"""

from __future__ import annotations

from dataclasses import dataclass

WARNING, DANGER = "warning", "danger"


@dataclass(frozen=True, slots=True)
class Threshold:
    """A rate at or above which something happens to the sender."""

    rate: float  # a fraction: 0.05 is 5%
    name: str
    consequence: str
    severity: str  # WARNING or DANGER
    pauses: bool = False  # SES may stop the account's sending: the scheduler holds issues


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    name: str
    thresholds: tuple[Threshold, ...]  # lowest first


BOUNCE = Metric("bounce", "bounce rate", (
    Threshold(0.05, "SES review", "Amazon SES places the account under review", WARNING),
    Threshold(0.10, "SES pause", "Amazon SES may pause the account's sending", DANGER,
              pauses=True),
))
COMPLAINT = Metric("complaint", "complaint rate", (
    Threshold(0.001, "SES review", "Amazon SES places the account under review", WARNING),
    Threshold(0.003, "Gmail limit", "above Gmail's limit for bulk senders, which may reject or "
              "junk the mail", WARNING),
    Threshold(0.005, "SES pause", "Amazon SES may pause the account's sending", DANGER,
              pauses=True),
))
METRICS = (BOUNCE, COMPLAINT)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A rate judged against its metric's thresholds."""

    metric: Metric
    count: int
    sent: int
    crossed: Threshold | None  # the highest threshold reached, if any

    @property
    def rate(self) -> float | None:
        return self.count / self.sent if self.sent else None

    @property
    def level(self) -> str:
        """``ok``, ``warning`` (SES review, Gmail's limit) or ``danger`` (SES may pause)."""
        return self.crossed.severity if self.crossed else "ok"

    @property
    def pauses(self) -> bool:
        return bool(self.crossed and self.crossed.pauses)

    @property
    def message(self) -> str:
        """The plain verdict: "complaint rate 0.40% (2 of 500 messages): above Gmail's …"."""
        rate = self.rate
        if rate is None:
            return f"{self.metric.name}: nothing sent yet"
        figure = f"{self.metric.name} {percent(rate)} ({self.count} of {self.sent} messages)"
        if self.crossed is not None:
            return (f"{figure}: at or over {percent(self.crossed.rate)}, "
                    f"{self.crossed.consequence}")
        first = self.metric.thresholds[0]
        return f"{figure}: fine, below the {percent(first.rate)} at which {first.consequence}"

    def as_dict(self) -> dict[str, object]:
        return {"metric": self.metric.key, "rate": self.rate, "count": self.count,
                "sent": self.sent, "level": self.level,
                "threshold": self.crossed.name if self.crossed else None,
                "message": self.message}


def judge(metric: Metric, count: int, sent: int) -> Verdict:
    """``count`` bounces or complaints out of ``sent`` messages, against ``metric``."""
    rate = count / sent if sent else 0.0
    crossed = None
    for threshold in metric.thresholds:
        if sent and rate >= threshold.rate:
            crossed = threshold
    return Verdict(metric, count, sent, crossed)


def percent(rate: float) -> str:
    """0.001 -> "0.1%", 0.0525 -> "5.25%": two decimals, trailing zeros kept short."""
    text = f"{rate * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"
