"""Commands that send: send (and proofs, dry runs, resumes) and status."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from newsletter.cli import EXIT_PROBLEM, Env, pass_env
from newsletter.cli.issues import issue_folder
from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    from newsletter.sending.engine import Progress, SendOptions, SendReport
    from newsletter.store.ledger import Ledger

UNKNOWN_HINT = ("`newsletter status {slug}` lists them; `newsletter send {slug} --retry-unknown` "
                "resends them (those who did get it will get it twice).")
TRIGGERED = ("{slug} is a triggered issue ({when}): `newsletter scheduler` sends it to each "
             "subscriber at their own time (`newsletter triggers` shows how it stands); proofs "
             "go out with --test-to")
CHANGED = ("{slug} changed since its send began ({sent} already sent): the rest would get "
           "another version. Restore the sent version, or send the new one as a new issue.")


@click.command()
@click.argument("issue")
@click.option("--transport", type=click.Choice(["outbox", "ses"]),
              help="Override the configured transport.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True),
              help="Messages per second (default: configured, or SES's MaxSendRate x safety).")
@click.option("--concurrency", type=click.IntRange(1, 256), help="Requests in flight.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Sender processes on this machine, sharing the rows and the rate.")
@click.option("--test-to", "test_to", multiple=True, metavar="EMAIL",
              help="Send a [Proof] copy to EMAIL (repeatable); the list is not touched.")
@click.option("--language", "proof_language", metavar="LANG",
              help="With --test-to: the proof of this translation, or 'all' for one of each "
                   "(default: the original).")
@click.option("--dry-run", is_flag=True, help="Personalise for everyone, send nothing.")
@click.option("--retry-unknown", is_flag=True,
              help="Resend messages whose fate is unknown after a crash (may duplicate).")
@click.option("--retry-failed", is_flag=True, help="Retry messages that failed before.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_env
def send(env: Env, issue: str, transport: str | None, rate: float | None,
         concurrency: int | None, workers: int, test_to: tuple[str, ...],
         proof_language: str | None, dry_run: bool, retry_unknown: bool, retry_failed: bool,
         yes: bool) -> None:
    """Send an issue to its audience, or resume a send that was interrupted. Each subscriber
    gets the translation in their language, else its fallback, else the original."""
    from newsletter.authoring.checks import check_issue, has_errors
    from newsletter.authoring.content import load_issue
    from newsletter.authoring.render import render_edition
    from newsletter.sending.engine import (
        SendOptions,
        attribute_placeholders,
        check_ready,
        content_hash,
        missing_attributes,
        plan_send,
        rehearse,
        send_proofs,
    )
    from newsletter.sending.workers import start_helpers
    from newsletter.store import Status, Store
    from newsletter.store.ledger import Ledger
    from newsletter.transports import make_transport

    settings = env.settings
    folder = issue_folder(env, issue)
    loaded = load_issue(folder, settings)
    if has_errors(check_issue(folder, settings)):
        raise NewsletterError(f"{loaded.slug} does not pass its checks: run `newsletter check "
                              f"{loaded.slug}`, fix the errors, then send")
    edition = render_edition(folder, settings)
    rendered = edition.original
    if test_to:
        languages = _proof_languages(edition.versions, proof_language)
        with make_transport(settings, transport) as proofs:
            for language in languages:
                for address, message_id in send_proofs(edition.versions[language], settings,
                                                       proofs, test_to):
                    click.echo(f"proof ({language}) sent to {address} ({message_id})")
        return
    if loaded.meta.trigger is not None:
        raise NewsletterError(TRIGGERED.format(slug=loaded.slug,
                                               when=loaded.meta.trigger.describe()))
    if proof_language:
        raise click.UsageError("--language chooses the language of proofs: use it with "
                               "--test-to")
    check_ready(settings, loaded.slug)
    with Store.open(settings.database_url) as store:
        ledger = Ledger(store)
        audience = loaded.meta.audience
        if missing := missing_attributes(rendered, store, audience):
            raise NewsletterError(f"{loaded.slug}: {missing}")
        _warn_of_the_last_issue(store, exclude=loaded.slug)
        if dry_run:
            count, size, problems = rehearse(rendered, settings, store, audience)
            for problem in problems:
                click.echo(f"would fail: {problem}", err=True)
            click.echo(f"dry run: {count} messages personalised ({size / 1e6:.1f} MB), "
                       "nothing sent")
            return
        existing = ledger.send(loaded.slug)
        if existing is None:
            size = store.count(statuses=[Status.ACTIVE], tags=audience)
            for name in attribute_placeholders(rendered):
                if blank := store.count(statuses=[Status.ACTIVE], tags=audience, lacking=name):
                    click.echo(f"{{{{{name}}}}} is blank for {blank} of {size} recipients")
            target = f" tagged {', '.join(audience)}" if audience else ""
            if not yes:
                click.confirm(f"Send “{rendered.subject}” to {size} active subscribers{target} "
                              f"through {transport or settings.transport}?", abort=True)
            planned, new = plan_send(edition, settings, ledger, audience)
            click.echo(f"planned {planned} deliveries" if new else
                       f"another sender planned {planned} deliveries just now: sharing them")
            existing = ledger.send(loaded.slug)
        elif existing.content_hash == content_hash(edition):
            click.echo(f"resuming: {_counts_line(ledger.counts(loaded.slug))}")
        if existing is None or existing.content_hash != content_hash(edition):
            raise NewsletterError(CHANGED.format(slug=loaded.slug,
                                                 sent=ledger.counts(loaded.slug)["sent"]))
        ledger.resume(loaded.slug)  # an operator's send goes on where the engine paused
        options = SendOptions.from_settings(settings, rate=rate, concurrency=concurrency,
                                            retry_unknown=retry_unknown,
                                            retry_failed=retry_failed)
        # Helpers join as workers; the retries (requeued by this process alone) reach them too.
        helpers = start_helpers(workers - 1, env.config, loaded.slug,
                                _helper_arguments(transport, rate, concurrency))
        with make_transport(settings, transport) as chosen:
            report = _send_with_progress(edition, settings, ledger, chosen, options,
                                         shared=bool(helpers))
        failed_helpers = sum(1 for helper in helpers if helper.wait() != 0)
        if helpers:
            report = dataclasses.replace(report, counts=ledger.counts(loaded.slug))
    _print_report(report, settings, transport or settings.transport)
    if failed_helpers:
        click.echo(f"{failed_helpers} of {len(helpers)} helper processes failed (see above)",
                   err=True)
    if report.stopped or failed_helpers:
        raise SystemExit(EXIT_PROBLEM)


def _helper_arguments(transport: str | None, rate: float | None,
                      concurrency: int | None) -> list[str]:
    given = {"--transport": transport, "--rate": rate, "--concurrency": concurrency}
    return [text for option, value in given.items() if value is not None
            for text in (option, str(value))]


def _proof_languages(versions: Any, chosen: str | None) -> list[str]:
    """The versions to proof: the original, the one asked for, or (``all``) every one."""
    if chosen in (None, "all"):
        return list(versions) if chosen else list(versions)[:1]
    if chosen not in versions:
        raise click.BadParameter(f"no version in {chosen!r}; this issue has "
                                 f"{', '.join(versions)}", param_hint="--language")
    return [chosen]


def _send_with_progress(edition: Any, settings: Any, ledger: Ledger, transport: Any,
                        options: SendOptions, *, shared: bool = False) -> SendReport:
    """Send with a progress bar: of this process's work, or (``shared``, when helper
    processes send too) of the whole send, read from the ledger twice a second."""
    from newsletter.sending.engine import send_issue

    queued = ledger.counts(edition.slug)["queued"]
    with click.progressbar(length=queued, label="sending", show_pos=True,
                           item_show_func=_progress_text) as bar:
        shown, read_at = [0], [0.0]

        def update(progress: Progress) -> None:
            done = progress.done
            if shared:
                if time.monotonic() - read_at[0] < 0.5:
                    return
                read_at[0] = time.monotonic()
                counts = ledger.counts(edition.slug)
                done = queued - sum(counts[s] for s in ("queued", "claimed", "sending"))
            bar.update(done - shown[0], progress)
            shown[0] = done

        return send_issue(edition, settings, ledger, transport, options, on_progress=update)


def _progress_text(progress: Progress | None) -> str:
    if progress is None:
        return ""
    return f"{progress.sent} sent, {progress.failed} failed, {progress.rate:.0f}/s"


def _print_report(report: SendReport, settings: Any, transport: str) -> None:
    click.echo(f"{report.issue}: {_counts_line(report.counts)}")
    click.echo(f"this run: {report.progress.sent} sent, {report.progress.failed} failed, "
               f"{report.progress.skipped} skipped in {report.progress.elapsed:.2f} s")
    if report.recovered_unknown:
        click.echo(f"{report.recovered_unknown} messages were in flight when an earlier send "
                   "stopped: their fate is unknown and they were not resent.")
    if report.progress.unknown:
        click.echo(f"{report.progress.unknown} messages got no answer from the provider, which "
                   "may have accepted them: marked unknown, not resent.")
    if report.recovered_unknown or report.progress.unknown:
        click.echo(UNKNOWN_HINT.format(slug=report.issue))
    if report.stopped:
        click.echo(f"stopped: {report.stopped}", err=True)
    elif transport == "outbox":
        click.echo(f"messages are in {Path(settings.outbox_dir) / report.issue}/")


def _counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "nothing planned"


@click.command()
@click.argument("issue")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_env
def status(env: Env, issue: str, as_json: bool) -> None:
    """Show how a send stands: counts per status, first errors, timing, and what SES reported
    since (deliveries, bounces, complaints, opens, clicks) with the unsubscribes it brought."""
    from newsletter.reports.alarms import last_issue_alarm
    from newsletter.sending.scheduling import local
    from newsletter.store import Store
    from newsletter.store.events import EventLog
    from newsletter.store.ledger import Ledger
    from newsletter.store.schedules import Schedules
    from newsletter.store.triggers import Triggers

    slug = issue_folder(env, issue).name
    with Store.open(env.settings.database_url) as store:
        ledger = Ledger(store)
        send_row = ledger.send(slug)
        counts, timing = ledger.counts(slug), ledger.timing(slug)
        languages = ledger.languages(slug)
        versions = {v: c for v, c in ledger.versions(slug).items() if v}  # triggered issues
        errors, unknown = ledger.errors(slug, "failed"), ledger.errors(slug, "unknown")
        reported = EventLog(store).summary(slug)
        scheduled = Schedules(store).get(slug)
        alarm = last_issue_alarm(store)
        trigger = Triggers(store).get(slug)
    state = ("not sent" if send_row is None else
             f"triggered, {trigger.state}" if trigger else
             "in progress or interrupted" if counts["queued"] or counts["claimed"]
             or counts["sending"] else "complete")
    schedule = None if scheduled is None else {
        "state": scheduled.state, "send_at": local(scheduled).isoformat(),
        "note": scheduled.note}
    report = {"issue": slug, "state": state, "schedule": schedule,
              "planned": send_row.planned if send_row else 0,
              "counts": counts, "languages": languages, "versions": versions,
              "errors": [{"error": e, "count": n} for e, n in errors],
              "unknown": [{"reason": e, "count": n} for e, n in unknown],
              "planned_at": send_row.created_at.isoformat() if send_row else None,
              "first_claimed": _iso(timing["first_claimed"]),
              "last_finished": _iso(timing["last_finished"]), "events": reported,
              "alarms": alarm.as_dicts() if alarm else []}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{slug}: {state}")
    if scheduled:
        note = f" — {scheduled.note}" if scheduled.note else ""
        click.echo(f"schedule: {scheduled.state} for {local(scheduled):%Y-%m-%d %H:%M %Z}{note}")
    if send_row:
        click.echo(f"planned {report['planned']} on {report['planned_at']}")
        click.echo(_counts_line(counts))
        if versions:
            click.echo("by version: " + ", ".join(
                f"{version[:8]} {sum(by_status.values())} ({by_status.get('sent', 0)} sent)"
                for version, by_status in versions.items()))
        if len(languages) > 1:
            original = env.settings.language
            click.echo("by language: " + ", ".join(
                f"{language or original} {sum(by_status.values())} "
                f"({by_status.get('sent', 0)} sent)" for language, by_status in sorted(
                    languages.items(), key=lambda item: (item[0] not in ("", original), item[0]))))
        for error, n in errors:
            click.echo(f"  {n} × {error}")
        if counts["unknown"]:
            click.echo(f"{counts['unknown']} unknown: they may or may not have gone out")
            for reason, n in unknown:
                click.echo(f"  {n} × {reason}")
            click.echo("  " + UNKNOWN_HINT.format(slug=slug))
        if report["first_claimed"]:
            click.echo(f"sending from {report['first_claimed']} to {report['last_finished']}")
        click.echo(f"reported since: {_events_line(reported)}")
    for line in alarm.lines() if alarm else []:
        click.echo(line, err=True)


def _warn_of_the_last_issue(store: Any, exclude: str) -> None:
    """Before a send: the last issue's bounce or complaint rate crossed an SES threshold."""
    from newsletter.reports.alarms import last_issue_alarm

    alarm = last_issue_alarm(store, exclude=exclude)
    for line in alarm.lines() if alarm else []:
        click.echo(line, err=True)


def _events_line(reported: dict[str, int]) -> str:
    """E.g. "12 delivered, 1 bounced, ... 3 opened": opens and clicks count once per message."""
    return ", ".join(f"{n} {name.replace('_', '-')}" for name, n in reported.items())


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


@click.command()
@click.option("--once", is_flag=True, help="One pass over the sends in progress, then exit.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds between looks for sends to join.")
@click.option("--issue", "only", metavar="ISSUE", help="Join only this issue's send.")
@click.option("--transport", type=click.Choice(["outbox", "ses"]),
              help="Override the configured transport.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True),
              help="Messages per second for all senders together (default: configured, or "
                   "SES's MaxSendRate x safety).")
@click.option("--concurrency", type=click.IntRange(1, 256), help="Requests in flight.")
@pass_env
def worker(env: Env, once: bool, interval: float, only: str | None, transport: str | None,
           rate: float | None, concurrency: int | None) -> None:
    """Join the sends in progress (on this or any machine sharing the database) until
    SIGTERM/Ctrl-C, or for one pass with --once."""
    import logging

    from newsletter.sending.engine import SendOptions, check_ready
    from newsletter.sending.workers import run_worker

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%Y-%m-%dT%H:%M:%S%z")
    logging.getLogger("newsletter").setLevel(logging.INFO)
    settings = env.settings
    check_ready(settings, only or "worker")
    slug = issue_folder(env, only).name if only else None
    options = SendOptions.from_settings(settings, rate=rate, concurrency=concurrency)
    report = run_worker(settings, options, once=once, interval=interval, transport=transport,
                        only=slug)
    if once and (report.skipped or any(r.stopped for r in report.reports)):
        raise SystemExit(EXIT_PROBLEM)


COMMANDS = (send, status, worker)
