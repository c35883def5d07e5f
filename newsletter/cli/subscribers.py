"""``newsletter subscribers …`` (the list, imports, GDPR requests) and ``newsletter db …``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from newsletter.cli import EXIT_PROBLEM, Env, pass_env
from newsletter.errors import InvalidValue
from newsletter.values import Status, clean_language

if TYPE_CHECKING:
    from newsletter.store import Store, Subscriber
    from newsletter.subscribers.imports import ImportReport

STATUSES = click.Choice([status.value for status in Status])
SHOWN_REJECTS = 20
MERGE_HELP = ("Rows for addresses already on the list change nothing unless --update; addresses "
              "that unsubscribed, bounced, complained or were erased are never re-added unless "
              "--resubscribe (counted as suppressed). See README, \"Importing subscribers\".")


@contextmanager
def _store(env: Env) -> Iterator[Store]:
    from newsletter.store import Store

    with Store.open(env.settings.database_url) as store:
        yield store


def _pairs(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {value!r}", param=param)
        pairs[key.strip()] = item
    return pairs


def _language(_ctx: click.Context, param: click.Parameter,
              value: str | tuple[str, ...] | None) -> Any:
    """A language option (one, or repeatable) as canonical BCP 47 tags; a bad one is a usage
    error, as the import would reject it."""
    values = (value,) if isinstance(value, str) else value or ()
    try:
        cleaned = [clean_language(item) for item in values]
    except InvalidValue as error:
        raise click.BadParameter(str(error), param=param) from None
    if isinstance(value, tuple):
        return tuple(tag for tag in cleaned if tag)
    return cleaned[0] if cleaned else None


@click.group()
def subscribers() -> None:
    """Manage the subscriber list: add, import, export, GDPR access and erasure."""


@subscribers.command()
@click.argument("email")
@click.option("--name", default="", help="Full name.")
@click.option("--attr", "attributes", multiple=True, metavar="KEY=VALUE", callback=_pairs,
              help="An attribute for personalisation, e.g. --attr organisation=CESIE (repeatable).")
@click.option("--tag", "tags", multiple=True, help="A tag for audiences (repeatable).")
@click.option("--language", metavar="LANG", callback=_language,
              help="The language they read, a BCP 47 tag such as el or pt-BR: they get that "
                   "translation of each issue (default: not known, the original).")
@click.option("--confirmed", is_flag=True,
              help="They already agreed: add as active (default: pending until they confirm).")
@click.option("--resubscribe", is_flag=True,
              help="Re-add an address that left or was erased (only if they asked to rejoin).")
@pass_env
def add(env: Env, email: str, name: str, attributes: dict[str, str], tags: tuple[str, ...],
        language: str | None, confirmed: bool, resubscribe: bool) -> None:
    """Add one subscriber."""
    status = Status.ACTIVE if confirmed else Status.PENDING
    with _store(env) as store:
        added = store.add(email, name=name, attributes=attributes, tags=tags, status=status,
                          source="cli", resubscribe=resubscribe, language=language)
    note = "" if confirmed else " (not mailed until they confirm; --confirmed if they already did)"
    click.echo(f"added {added.email} as {added.status}{note}")


@subscribers.command("import", epilog=MERGE_HELP)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--map", "columns", multiple=True, metavar="COLUMN=FIELD", callback=_pairs,
              help="Read COLUMN as FIELD (email, name, tags, status, language, an attribute, "
                   "or - to skip it), e.g. --map 'E-Mail Address=email' (repeatable).")
@click.option("--encoding", default="utf-8-sig", show_default=True,
              help="The file's encoding, e.g. cp1252 for Excel on Windows.")
@click.option("--delimiter", help="Field separator (default: guessed from the header).")
@click.option("--update", is_flag=True, help="Update names, languages, attributes and tags of "
                                             "addresses already on the list.")
@click.option("--resubscribe", is_flag=True,
              help="Re-add addresses that left or were erased (only if they asked to rejoin).")
@click.option("--status", "status", type=click.Choice(["active", "pending"]), default="active",
              show_default=True, help="Status of new rows that have none of their own.")
@click.option("--tag", "tags", multiple=True, help="Tag every imported row (repeatable).")
@click.option("--welcome", is_flag=True,
              help="Send the welcome issue (and its sequence) to those added or made active.")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write rejected rows (default: FILE.rejects.csv beside FILE).")
@pass_env
def import_(env: Env, file: Path, columns: dict[str, str], encoding: str,
            delimiter: str | None, update: bool, resubscribe: bool, status: str,
            tags: tuple[str, ...], welcome: bool, rejects: Path | None) -> None:
    """Import subscribers from a CSV file with an email column (exit 1 if rows were rejected).

    Without --welcome, the welcome issue does not go to them: they are on the list already."""
    from newsletter.subscribers.imports import ImportOptions, import_csv

    options = ImportOptions(update=update, resubscribe=resubscribe, status=Status(status),
                            tags=tags, columns=columns, encoding=encoding, delimiter=delimiter,
                            welcome=welcome)
    with _store(env) as store, click.progressbar(length=file.stat().st_size, file=sys.stderr,
                                                 label=f"Importing {file.name}") as bar:
        report = import_csv(store, file, options, rejects_path=rejects,
                            progress=lambda done: bar.update(done - bar.pos))
    _print_report(report)
    if report.rejected:
        sys.exit(EXIT_PROBLEM)


def _print_report(report: ImportReport) -> None:
    for reject in report.shown[:SHOWN_REJECTS]:
        click.echo(f"{report.path.name}: {reject}", err=True)
    if report.set_aside > SHOWN_REJECTS:
        click.echo(f"… and {report.set_aside - SHOWN_REJECTS:,} more", err=True)
    counts = ", ".join(f"{count:,} {name}" for name, count in report.counts().items())
    click.echo(f"{report.rows:,} rows: {counts}")
    if report.welcomed:
        click.echo(f"{report.welcomed:,} to welcome: the scheduler sends them the welcome issue")
    if report.rejects_path:
        click.echo(f"rejected and duplicate rows, with the reason, are in {report.rejects_path}"
                   " (fix them and import that file)")


@subscribers.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--status", "statuses", multiple=True, type=STATUSES,
              help="Only subscribers with this status (repeatable; default: all).")
@click.option("--tag", "tags", multiple=True, help="Only subscribers with any of these tags.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]),
              help="csv: the import format (default); json: every field.")
@pass_env
def export(env: Env, file: Path | None, statuses: tuple[str, ...], tags: tuple[str, ...],
           fmt: str | None) -> None:
    """Export subscribers to FILE, or to standard output without one."""
    from newsletter.subscribers.exports import export_csv, export_json

    fmt = fmt or ("json" if file and file.suffix.lower() == ".json" else "csv")
    writer = export_json if fmt == "json" else export_csv
    with _store(env) as store, _output(file) as out:
        count = writer(store, out, statuses=[Status(s) for s in statuses], tags=tags)
    if file:
        click.echo(f"exported {count:,} subscribers to {file}")


@contextmanager
def _output(file: Path | None) -> Iterator[TextIO]:
    if file is None:
        yield sys.stdout
        return
    with file.open("w", encoding="utf-8", newline="") as out:
        yield out


@subscribers.command("list")
@click.option("--status", "statuses", multiple=True, type=STATUSES,
              help="Only subscribers with this status (repeatable; default: all).")
@click.option("--tag", "tags", multiple=True, help="Only subscribers with any of these tags.")
@click.option("--language", "languages", multiple=True, metavar="LANG", callback=_language,
              help="Only subscribers with this language or a regional form of it: el, pt "
                   "(also pt-BR), pt-BR (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many.")
@pass_env
def list_(env: Env, statuses: tuple[str, ...], tags: tuple[str, ...],
          languages: tuple[str, ...], limit: int | None) -> None:
    """List subscribers, oldest first."""
    wanted = [Status(s) for s in statuses]
    shown = 0
    with _store(env) as store:
        for subscriber in store.subscribers(statuses=wanted, tags=tags, languages=languages):
            if limit is not None and shown >= limit:
                break
            click.echo(f"{subscriber.id:>7}  {_cut(subscriber.email, 40):<40}  "
                       f"{_cut(subscriber.name, 28):<28}  {subscriber.status:<12}  "
                       f"{subscriber.language or '–':<6}  {', '.join(subscriber.tags)}")
            shown += 1
        total = store.count(statuses=wanted, tags=tags, languages=languages)
    click.echo(f"{shown:,} of {total:,} subscribers", err=True)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


@subscribers.command()
@click.argument("email")
@pass_env
def show(env: Env, email: str) -> None:
    """Show one subscriber."""
    with _store(env) as store:
        subscriber = store.require(email)
        consents = len(store.personal_data(email).get("consents", []))
    for label, value in _details(subscriber, consents):
        click.echo(f"{label + ':':<16}{value}")


def _details(s: Subscriber, consents: int) -> list[tuple[str, Any]]:
    since = f"since {s.status_changed_at:%Y-%m-%d %H:%M} UTC"
    why = f" ({s.status_reason}{', issue ' + s.status_issue if s.status_issue else ''})"
    rows: list[tuple[str, Any]] = [
        ("id", s.id), ("email", s.email), ("name", s.name or "–"),
        ("first name", s.first_name or "–"),
        ("language", s.language or "– (not known: gets the original)"),
        ("status", f"{s.status} {since}{why if s.status_reason else ''}"),
        ("tags", ", ".join(s.tags) or "–"), ("source", s.source or "–"),
        ("created", f"{s.created_at:%Y-%m-%d %H:%M} UTC"),
        ("confirmed", f"{s.confirmed_at:%Y-%m-%d %H:%M} UTC" if s.confirmed_at else "–"),
        ("consents", consents)]
    rows += [(f"  {key}", value) for key, value in s.attributes.items()]
    return rows


@subscribers.command()
@click.argument("email")
@click.option("--reason", default="removed with the CLI", show_default=True,
              help="Why, for the record.")
@pass_env
def remove(env: Env, email: str, reason: str) -> None:
    """Unsubscribe someone. The record stays, so no import can re-add them by mistake."""
    with _store(env) as store:
        subscriber = store.require(email)
        store.set_status(subscriber.id, Status.UNSUBSCRIBED, reason=reason)
    click.echo(f"unsubscribed {subscriber.email} (record kept; `forget` erases it)")


@subscribers.command()
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_env
def forget(env: Env, email: str, yes: bool) -> None:
    """Erase everything held about someone (GDPR art. 17); only a keyed hash of the address
    stays, so that it is never mailed or imported again."""
    if not yes:
        click.confirm(f"Erase all data about {email}? This cannot be undone", abort=True)
    with _store(env) as store:
        erasure = store.forget(email)
    if erasure.removed is None:
        click.echo(f"no personal data was held about {erasure.email}")
    else:
        held = erasure.removed
        parts = [f"name {held['name']!r}" if held["name"] else "",
                 f"attributes {', '.join(held['attributes'])}" if held["attributes"] else "",
                 f"tags {', '.join(held['tags'])}" if held["tags"] else ""]
        click.echo(f"erased {erasure.email}: the subscriber record (address, "
                   f"{'; '.join(p for p in parts if p) or 'no other fields'}; status history, "
                   f"source and dates) and {erasure.consents} consent record(s)")
    click.echo("kept: a keyed hash of the address on the suppression list, so it is never "
               "mailed or imported again")


@subscribers.command("export-data")
@click.argument("email")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of standard output.")
@pass_env
def export_data(env: Env, email: str, output: Path | None) -> None:
    """Everything held about one person, as JSON (GDPR art. 15 access request)."""
    with _store(env) as store:
        data = store.personal_data(email)
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(text)


@click.group()
def db() -> None:
    """The database: schema migrations."""


@db.command()
@pass_env
def upgrade(env: Env) -> None:
    """Apply pending migrations (commands upgrade an empty database by themselves)."""
    from newsletter.store import database as db_schema

    engine = db_schema.make_engine(env.settings.database_url)
    try:
        before = db_schema.current_revision(engine)
        after = db_schema.upgrade(engine)
    finally:
        engine.dispose()
    where = db_schema.safe_url(engine)
    if before == after:
        click.echo(f"{where} is up to date (revision {after})")
    else:
        click.echo(f"{where} upgraded from revision {before or 'none'} to {after}")


COMMANDS = (subscribers, db)
