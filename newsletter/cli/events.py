"""``newsletter events``: apply SES events (bounces, complaints, deliveries, opens, clicks) from a
file of saved notifications or from an SQS queue. The webhook (``newsletter serve``) applies the
same events as SNS posts them."""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

import click

from newsletter.cli import EXIT_PROBLEM, Env, pass_env

if TYPE_CHECKING:
    from newsletter.feedback.events import Tally

MAX_PROBLEMS = 20  # malformed documents listed one by one; the rest are counted
# The longest long poll SQS allows, newsletter.feedback.events.SQS_WAIT: repeated here because
# importing that module for --wait's range would load the store, and SQLAlchemy, with every
# command (tests/test_cli_imports.py checks that the two agree).
SQS_WAIT = 20


@click.group()
def events() -> None:
    """Apply SES events: bounces and complaints suppress subscribers, the rest is recorded."""


@events.command("ingest")
@click.argument("file", type=click.File("rb"))
@pass_env
def ingest_command(env: Env, file: BinaryIO) -> None:
    """Apply the events in FILE ("-" for stdin): saved SNS notifications or raw SES events, as
    one JSON document, a JSON array or JSON lines. Exits 1 if any were malformed (the others
    are still applied). Applying the same file again changes nothing."""
    from newsletter.feedback.events import ingest
    from newsletter.store import Store

    settings = env.settings
    with Store.open(settings.database_url) as store:
        tally = ingest(file.read(), settings, store)
    _finish(tally)


@events.command()
@click.option("--queue-url", metavar="URL", help="The SQS queue (default: sqs_queue_url).")
@click.option("--once", is_flag=True, help="Receive one batch (up to 10 messages), then stop.")
@click.option("--max-messages", type=click.IntRange(min=1), metavar="N",
              help="Stop after N messages.")
@click.option("--wait", type=click.IntRange(0, SQS_WAIT), default=SQS_WAIT, show_default=True,
              help="Seconds each receive waits for messages (long polling).")
@pass_env
def poll(env: Env, queue_url: str | None, once: bool, max_messages: int | None,
         wait: int) -> None:
    """Apply events from an SQS queue subscribed to the SES topic (SES → SNS → SQS).

    Runs until stopped (Ctrl-C) unless --once or --max-messages. Each message is deleted
    once applied; malformed ones are logged and left for the queue's redrive policy."""
    from newsletter.feedback.events import Tally, poll_queue
    from newsletter.store import Store

    settings = env.settings
    tally, shown = Tally(), [0]

    def progress(so_far: Tally) -> None:
        for problem in so_far.problems[shown[0]:]:
            click.echo(f"malformed, left on the queue: {problem}", err=True)
        shown[0] = len(so_far.problems)
        click.echo(f"so far: {so_far}")

    with Store.open(settings.database_url) as store:
        try:
            poll_queue(settings, store, queue_url, once=once, max_messages=max_messages,
                       wait=wait, tally=tally, on_batch=progress)
        except KeyboardInterrupt:
            click.echo("stopped", err=True)
    click.echo(str(tally))
    if tally.malformed:
        raise SystemExit(EXIT_PROBLEM)


def _finish(tally: Tally) -> None:
    click.echo(str(tally))
    for problem in tally.problems[:MAX_PROBLEMS]:
        click.echo(f"malformed: {problem}", err=True)
    if len(tally.problems) > MAX_PROBLEMS:
        click.echo(f"… and {len(tally.problems) - MAX_PROBLEMS} more", err=True)
    if tally.malformed:
        raise SystemExit(EXIT_PROBLEM)


COMMANDS = (events,)
