"""The managed subscriber list: models, the Store object, migrations (see DESIGN.md)."""

from newsletter.store.models import Consent, Subscriber, Suppression
from newsletter.store.store import Erasure, Recipient, Standing, Store
from newsletter.values import SUPPRESSED, Status

__all__ = ["SUPPRESSED", "Consent", "Erasure", "Recipient", "Standing", "Status", "Store",
           "Subscriber", "Suppression"]
