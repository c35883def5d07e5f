"""The managed subscriber list: models, the Store object, migrations (see DESIGN.md)."""

from newsletter.store.models import SUPPRESSED, Consent, Status, Subscriber, Suppression
from newsletter.store.store import Erasure, Recipient, Store

__all__ = ["SUPPRESSED", "Consent", "Erasure", "Recipient", "Status", "Store", "Subscriber",
           "Suppression"]
