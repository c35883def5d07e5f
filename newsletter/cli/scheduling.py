"""Commands for sending at a set time: schedule, unschedule, scheduled, scheduler."""

from __future__ import annotations

import click

from newsletter.cli import EXIT_PROBLEM, Env, pass_env
from newsletter.cli.issues import issue_folder
from newsletter.errors import NewsletterError


@click.command()
@click.argument("issue")
@click.option("--at", "when", metavar="WHEN",
              help="'2025-10-06 09:00 Europe/Sofia' or '2025-10-06T09:00+03:00' "
                   "(default: the issue's send_at).")
@click.option("--confirm-risk", is_flag=True,
              help="Send it even though the last issue's complaint rate crossed SES's pause "
                   "threshold (releases an issue the scheduler held for that, at its time).")
@pass_env
def schedule(env: Env, issue: str, when: str | None, confirm_risk: bool) -> None:
    """Schedule an issue to be sent by `newsletter scheduler` at its time."""
    from newsletter.sending.scheduling import local, schedule_issue
    from newsletter.store import Store
    from newsletter.store.schedules import Schedules

    folder = issue_folder(env, issue)
    with Store.open(env.settings.database_url) as store:
        schedules = Schedules(store)
        if confirm_risk and not when and schedules.confirm_risk(folder.name):
            row = schedules.get(folder.name)
            assert row is not None
            click.echo(f"{row.issue}: risk confirmed; it goes out at its time "
                       f"({local(row):%Y-%m-%d %H:%M %Z}), or at the scheduler's next pass "
                       "if that has passed (within the grace period)")
            return
        row = schedule_issue(env.settings, store, folder, when, confirm_risk=confirm_risk)
    click.echo(f"{row.issue} will be sent at {local(row):%Y-%m-%d %H:%M %Z} "
               f"({row.send_at.astimezone():%Y-%m-%d %H:%M %Z} here) by `newsletter scheduler`")


@click.command()
@click.argument("issue")
@pass_env
def unschedule(env: Env, issue: str) -> None:
    """Take an issue off the schedule (not once its send has started)."""
    from newsletter.store import Store
    from newsletter.store.schedules import Schedules

    slug = issue_folder(env, issue).name
    with Store.open(env.settings.database_url) as store:
        if not Schedules(store).remove(slug):
            raise NewsletterError(f"{slug} is not scheduled, or its send has already started")
    click.echo(f"{slug} is no longer scheduled")


@click.command()
@pass_env
def scheduled(env: Env) -> None:
    """List scheduled issues: when (in their zone and here) and in what state."""
    from newsletter.sending.scheduling import local
    from newsletter.store import Store
    from newsletter.store.schedules import Schedules

    with Store.open(env.settings.database_url) as store:
        rows = Schedules(store).all()
    if not rows:
        click.echo("nothing is scheduled")
    for row in rows:
        note = f" — {row.note}" if row.note else ""
        click.echo(f"{row.issue}  {local(row):%Y-%m-%d %H:%M %Z}  "
                   f"({row.send_at.astimezone():%Y-%m-%d %H:%M %Z} here)  {row.state}{note}")


@click.command()
@click.option("--once", is_flag=True, help="Do one pass and exit (for cron or a systemd timer).")
@click.option("--interval", type=click.FloatRange(min=0.1), help="Seconds between passes.")
@pass_env
def scheduler(env: Env, once: bool, interval: float | None) -> None:
    """Send scheduled issues at their time (runs until SIGTERM/Ctrl-C, or --once)."""
    import logging

    from newsletter.sending.scheduler import run_scheduler

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%Y-%m-%dT%H:%M:%S%z")
    logging.getLogger("newsletter").setLevel(logging.INFO)
    report = run_scheduler(env.settings, once=once, interval=interval)
    if once and (report.held or report.missed):
        raise SystemExit(EXIT_PROBLEM)


COMMANDS = (schedule, unschedule, scheduled, scheduler)
