"""``newsletter triggers``: welcome issues and sequences, which `newsletter scheduler` sends to
each subscriber at their own time. List them, pause and resume one, or backfill it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from newsletter.cli import Env, pass_env
from newsletter.cli.issues import issue_folder
from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    from newsletter.sending.triggered import Triggered
    from newsletter.store import Store


@click.group(invoke_without_command=True)
@click.pass_context
def triggers(ctx: click.Context) -> None:
    """Triggered issues (front matter `trigger:`): what each waits for, how many got each of
    its versions, how many are due now. `newsletter scheduler` sends them."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_triggers)


@triggers.command("list")
@pass_env
def list_triggers(env: Env) -> None:
    """List the triggered issues (the default)."""
    from newsletter.sending.scheduling import utc_now
    from newsletter.sending.triggered import find_triggered
    from newsletter.store import Store
    from newsletter.store.ledger import Ledger
    from newsletter.store.triggers import Triggers

    with Store.open(env.settings.database_url) as store:
        found = find_triggered(env.settings, store)
        if not found:
            click.echo("no triggered issues (front matter `trigger: welcome`, or `trigger: "
                       "{after: SLUG, delay: \"3 days\"}`)")
            return
        ledger, now = Ledger(store), utc_now()
        for triggered in found:
            trigger = triggered.meta.trigger
            assert trigger is not None
            click.echo(f"{triggered.slug}: {trigger.describe()}")
            state = triggered.state
            if state is None:
                click.echo("  not live yet: goes live at the scheduler's next pass (if it "
                           "passes `newsletter check`)")
                continue
            since = f"{state.started_at:%Y-%m-%d %H:%M} UTC"
            click.echo(f"  {state.state} since {since}, version {state.version[:8]}"
                       + (f"; held: {state.note}" if state.note else ""))
            for version, counts in ledger.versions(triggered.slug).items():
                click.echo(f"  version {version[:8] or '–'}: {counts.get('sent', 0)} sent"
                           + "".join(f", {n} {status}" for status, n in sorted(counts.items())
                                     if status != "sent"))
            if triggered.rule is not None:
                due = Triggers(store).count_due(triggered.slug, triggered.rule, now,
                                                triggered.meta.audience)
                click.echo(f"  due now: {due}")


@triggers.command()
@click.argument("issue")
@pass_env
def pause(env: Env, issue: str) -> None:
    """Stop sending a triggered issue; those who become due meanwhile get it on resume."""
    from newsletter.store import Store
    from newsletter.store.triggers import PAUSED, Triggers

    with Store.open(env.settings.database_url) as store:
        slug = _live(env, store, issue).slug
        Triggers(store).set_state(slug, PAUSED)
    click.echo(f"{slug} is paused: `newsletter triggers resume {slug}` sends it again")


@triggers.command()
@click.argument("issue")
@pass_env
def resume(env: Env, issue: str) -> None:
    """Send a paused triggered issue again (to whoever became due meanwhile, too)."""
    from newsletter.store import Store
    from newsletter.store.ledger import Ledger
    from newsletter.store.triggers import LIVE, Triggers

    with Store.open(env.settings.database_url) as store:
        slug = _live(env, store, issue).slug
        Triggers(store).set_state(slug, LIVE)
        Ledger(store).resume(slug)  # and where the engine paused it (a fatal SES error)
    click.echo(f"{slug} is live: the scheduler's next pass sends it to whoever is due")


@triggers.command()
@click.argument("issue")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_env
def backfill(env: Env, issue: str, yes: bool) -> None:
    """Queue a triggered issue for everyone it would have gone to had it been live all along
    (e.g. the welcome issue for those on the list before it existed). Nobody gets it twice."""
    from newsletter.sending.scheduling import utc_now
    from newsletter.sending.triggered import language_chooser
    from newsletter.store import Store
    from newsletter.store.triggers import Triggers

    with Store.open(env.settings.database_url) as store:
        triggered = _live(env, store, issue)
        if triggered.rule is None:
            raise NewsletterError(f"{triggered.slug} follows 'welcome', and there is not "
                                  "exactly one welcome issue: run `newsletter check`")
        triggers, now = Triggers(store), utc_now()
        audience = triggered.meta.audience
        if not yes:
            due = triggers.count_due(triggered.slug, triggered.rule, now, audience)
            click.confirm(f"Queue {triggered.slug} for everyone it applies to who has not had "
                          f"it (at least {due} are due in any case)?", abort=True)
        added = triggers.backfill(triggered.slug, triggered.rule, now, audience=audience,
                                  version_for=language_chooser(
                                      env.settings, env.settings.issues_dir / triggered.slug))
    click.echo(f"{added} queued: the scheduler's next pass sends them")


def _live(env: Env, store: Store, issue: str) -> Triggered:
    from newsletter.sending.triggered import find_triggered

    slug = issue_folder(env, issue).name
    found = {t.slug: t for t in find_triggered(env.settings, store)}
    if slug not in found:
        raise NewsletterError(f"{slug} has no trigger in its front matter")
    if found[slug].state is None:
        raise NewsletterError(f"{slug} is not live yet: the scheduler makes it live at its "
                              "next pass")
    return found[slug]


COMMANDS = (triggers,)
