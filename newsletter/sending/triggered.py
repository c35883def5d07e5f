"""Triggered issues on each scheduler pass: queue who is due, send through the engine.

For each issue with a ``trigger`` (see ``store.triggers`` for who is due and why a pass
costs little when no one is): the first pass that finds it, and finds it passing ``check``,
makes it live; later passes queue the subscribers due since and send the issue's queued rows
with the same engine, ledger, rate and retries as any send, so a pass killed mid-send resumes
on the next one and nobody gets it twice.

An issue edited while live is a new version: it is rendered and checked before it reaches
anyone; if it fails ``check`` the issue is held (the due wait, queued) until it passes, and
each delivery records the version it got. Rendering happens only in passes where someone is
due, so a quiet pass reads front matter that changed and a few index ranges, nothing more.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.authoring.checks import check_issue, has_errors
from newsletter.authoring.content import (
    ISSUE_FILE,
    WELCOME,
    FrontMatter,
    read_front_matter,
    translation_files,
    triggered_issues,
)
from newsletter.authoring.render import render_edition
from newsletter.config import Settings
from newsletter.errors import ContentError, NewsletterError
from newsletter.message import Edition, version_for
from newsletter.sending.engine import SendOptions, check_ready, content_hash, send_issue
from newsletter.store import Store
from newsletter.store.ledger import Ledger
from newsletter.store.triggers import PAUSED, Rule, Triggers, TriggerState

if TYPE_CHECKING:
    from newsletter.sending.scheduling import PassReport, Runner

HELD = "the edited version fails `newsletter check`"


@dataclass(frozen=True)
class Triggered:
    """A triggered issue as its front matter and the database see it."""

    slug: str
    meta: FrontMatter
    rule: Rule | None  # None: it follows "welcome", and there is no single welcome issue
    state: TriggerState | None  # None: not live yet


def find_triggered(settings: Settings, store: Store,
                   states: dict[str, TriggerState] | None = None) -> list[Triggered]:
    """Every triggered issue in issues/, with its rule resolved and its state (``states``:
    the triggers' states, when the caller has read them already)."""
    found = triggered_issues(settings)
    welcome = [slug for slug, meta in found.items() if meta.trigger and meta.trigger.welcome]
    states = Triggers(store).all() if states is None else states
    return [Triggered(slug, meta, _rule(meta, welcome), states.get(slug))
            for slug, meta in found.items()]


def _rule(meta: FrontMatter, welcome: list[str]) -> Rule | None:
    trigger = meta.trigger
    assert trigger is not None
    if trigger.welcome:
        return Rule()
    if trigger.after == WELCOME:
        return Rule(welcome[0], trigger.delay) if len(welcome) == 1 else None
    return Rule(trigger.after, trigger.delay)


def language_chooser(settings: Settings, folder: Path) -> Callable[[str | None], str]:
    """The version each reader language gets, from the translations on disk (no rendering:
    planning is cheap; the send renders)."""
    available = {settings.language, *(language for language in translation_files(folder)
                                      if language in settings.offered_languages)}
    return functools.partial(version_for, settings, available)


def run_triggers(runner: Runner, report: PassReport) -> None:
    """One pass over every triggered issue (the caller holds the scheduler lease)."""
    states = Triggers(runner.store).all()
    found = find_triggered(runner.settings, runner.store, states)
    for slug in states.keys() - {t.slug for t in found}:
        if problem := _unreadable(runner.settings, slug):  # live, and now broken
            report.held.append(slug)
            report.say(f"{slug}: held: {problem}")
    for triggered in found:
        if runner.stop.is_set():
            break
        try:
            _run_one(runner, triggered, report)
        except NewsletterError as error:
            report.held.append(triggered.slug)
            report.say(f"{triggered.slug}: held: {error}")


def _run_one(runner: Runner, triggered: Triggered, report: PassReport) -> None:
    settings, store, slug = runner.settings, runner.store, triggered.slug
    triggers, state, rule, now = Triggers(store), triggered.state, triggered.rule, runner.clock()
    folder = settings.issues_dir / slug
    if rule is None:
        report.held.append(slug)
        report.say(f"{slug}: held: it follows 'welcome', and there is not exactly one welcome "
                   "issue (see `newsletter check`)")
        return
    if state is None:
        if _passes(settings, slug, report, "goes live once it passes") \
                and (edition := _rendered(settings, slug)) is not None:
            triggers.go_live(slug, rule, content_hash(edition), edition.original.subject, now,
                             triggered.meta.audience)
            report.say(f"{slug}: live: goes to each subscriber "
                       f"{_when(triggered)} from now on")
        return
    if state.state == PAUSED:
        return
    if state.rule != rule.key:
        triggers.restart(slug, rule, now)
        report.say(f"{slug}: trigger changed to {_when(triggered)}: applies from now on")
        state = triggers.get(slug) or state
    added = triggers.plan_due(state, rule, now, audience=triggered.meta.audience,
                              version_for=language_chooser(settings, folder))
    if added or Ledger(store).waiting(slug):  # newly due, or left by an interrupted pass
        _send(runner, triggered, state, added, report)


def _send(runner: Runner, triggered: Triggered, state: TriggerState, added: int,
          report: PassReport) -> None:
    settings, slug = runner.settings, triggered.slug
    triggers, ledger = Triggers(runner.store), Ledger(runner.store)
    edition = _rendered(settings, slug)
    if edition is None or content_hash(edition) != state.version:
        if not _passes(settings, slug, report, "the due wait until it passes") \
                or edition is None:
            triggers.hold(slug, HELD)
            return
        version = content_hash(edition)
        triggers.adopt(slug, version, edition.original.subject)
        report.say(f"{slug}: new version {version[:8]} goes out from now on")
    elif state.note:
        triggers.hold(slug, "")
    begun = ledger.send(slug)
    if begun is not None and begun.note:  # the engine paused it: a person looks first
        report.waiting.append(slug)
        report.say(f"{slug}: {begun.note}; `newsletter triggers resume {slug}` resumes it")
        return
    check_ready(settings, slug)
    with runner.transport() as transport:
        result = send_issue(edition, settings, ledger, transport,
                            SendOptions.from_settings(settings),
                            on_progress=runner.renew_lease(), stop=runner.stop)
    counts = ", ".join(f"{n} {s}" for s, n in result.counts.items() if n)
    if result.complete:
        report.sent.append(slug)
        report.say(f"{slug}: {added} newly due; sent ({counts})")
    else:
        report.waiting.append(slug)
        report.say(f"{slug}: not finished ({counts}): {result.stopped}")


def _unreadable(settings: Settings, slug: str) -> str:
    """Why a live triggered issue's front matter no longer loads ("" if it loads: its trigger
    was taken out, or the issue removed, which ends it)."""
    if not (settings.issues_dir / slug / ISSUE_FILE).is_file():
        return ""
    try:
        read_front_matter(settings.issues_dir / slug, settings)
    except ContentError as error:
        return f"its front matter does not load ({error.problems[0]}); see `newsletter check`"
    return ""


def _rendered(settings: Settings, slug: str) -> Edition | None:
    try:
        return render_edition(settings.issues_dir / slug, settings)
    except NewsletterError:  # broken content: `check` says how, in _passes
        return None


def _passes(settings: Settings, slug: str, report: PassReport, then: str) -> bool:
    """Whether the issue passes ``check``; if not, the pass says it is held."""
    if has_errors(check_issue(settings.issues_dir / slug, settings)):
        report.held.append(slug)
        report.say(f"{slug}: held: it fails `newsletter check`; {then}")
        return False
    return True


def _when(triggered: Triggered) -> str:
    trigger = triggered.meta.trigger
    assert trigger is not None
    return "as they join" if trigger.welcome else trigger.describe()

