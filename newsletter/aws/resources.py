"""What a newsletter needs at AWS, by name, and the policies that join the pieces.

The names follow from ``newsletter.toml``: the domain of ``from``, ``ses_configuration_set``
(else one made from ``name``), the topic already in ``sns_topic_arns`` and the queue of
``sqs_queue_url`` where set (else names made from the configuration set's), so that setup finds
again what it created, and what someone created by hand, instead of making a second one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from newsletter.config import Settings

# Every resource setup creates carries these tags, so it can be found (and billed) again.
CREATED_BY = "newsletter ses setup"
# The event types a newsletter needs published, what tracking adds, and the two without which
# the list cannot be kept clean.
EVENTS = ("BOUNCE", "COMPLAINT", "DELIVERY", "REJECT", "RENDERING_FAILURE", "DELIVERY_DELAY")
TRACKING = ("OPEN", "CLICK")
ESSENTIAL = ("BOUNCE", "COMPLAINT")
DESTINATION = "newsletter-events"  # the event destination's name in the configuration set
MAIL_FROM_LABEL = "bounce"  # the custom MAIL FROM domain is bounce.<domain>
DEAD_LETTER_RECEIVES = 5  # receives before SQS moves a message to the dead-letter queue
DEAD_LETTER_RETENTION = 14 * 24 * 3600  # the longest SQS keeps a message: time to look
WEBHOOK_PATH = "/webhooks/ses"


@dataclass(frozen=True)
class Names:
    """The names of everything ``setup`` creates and ``doctor`` checks for one newsletter."""

    sender: str  # the from address
    domain: str  # its domain: the identity setup creates, with Easy DKIM
    configuration_set: str
    topic: str
    queue: str
    dead_letter_queue: str
    webhook: str  # the URL SNS posts events to
    mail_from: str  # the custom MAIL FROM domain setup proposes

    @classmethod
    def of(cls, settings: Settings) -> Names:
        configuration_set = settings.ses_configuration_set or _resource_name(settings.name)
        topic = (settings.sns_topic_arns[0].rpartition(":")[2] if settings.sns_topic_arns
                 else f"{configuration_set}-events")
        queue = (settings.sqs_queue_url.rstrip("/").rpartition("/")[2]
                 if settings.sqs_queue_url else f"{configuration_set}-events")
        return cls(sender=settings.sender_address, domain=settings.domain,
                   configuration_set=configuration_set, topic=topic, queue=queue,
                   dead_letter_queue=f"{queue}-dead-letters",
                   webhook=settings.base_url + WEBHOOK_PATH,
                   mail_from=f"{MAIL_FROM_LABEL}.{settings.domain}")

    @property
    def tags(self) -> list[dict[str, str]]:
        return [{"Key": "newsletter", "Value": self.configuration_set},
                {"Key": "created-by", "Value": CREATED_BY}]

    @property
    def tag_map(self) -> dict[str, str]:
        """The tags as SQS takes them."""
        return {tag["Key"]: tag["Value"] for tag in self.tags}


def _resource_name(name: str) -> str:
    """``asit-newsletter`` for "ASIT Newsletter": what SES, SNS and SQS names allow (letters,
    digits, ``-`` and ``_``), short enough for all three with a suffix."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")
    return slug or "newsletter"
