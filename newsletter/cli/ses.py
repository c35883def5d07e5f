"""``newsletter ses``: set Amazon SES up for this newsletter, check it, print least-privilege
IAM policies. The library is ``newsletter.aws``; boto3 is imported only when a command runs."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from newsletter.cli import EXIT_PROBLEM, Env, pass_env


@click.group()
def ses() -> None:
    """Set up Amazon SES (identity, DKIM, events) and check that everything is in place."""


@ses.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option("--nameserver", metavar="HOST[:PORT]",
              help="Ask this DNS server (your DNS provider's, say) instead of the system's "
                   "resolver, whose cache may hold old answers.")
@pass_env
def doctor(env: Env, as_json: bool, nameserver: str | None) -> None:
    """Check every piece SES sending needs, and say how to fix each one that is wrong.

    Read-only. Exits 1 when a check fails (warnings don't fail)."""
    from newsletter.aws import dns
    from newsletter.aws.doctor import diagnose

    checks = diagnose(env.settings, resolver=dns.make_resolver(nameserver))
    ok = all(check.status != "fail" for check in checks)
    if as_json:
        click.echo(json.dumps({"ok": ok, "checks": [c.as_json() for c in checks]}, indent=2))
    else:
        for check in checks:
            click.echo(str(check))
        counts = {status: sum(c.status == status for c in checks)
                  for status in ("ok", "warn", "fail")}
        click.echo(f"\n{counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failed")
    if not ok:
        raise SystemExit(EXIT_PROBLEM)


@ses.command()
@click.option("--dry-run", is_flag=True, help="Print what would be created; change nothing.")
@click.option("--events", "route", type=click.Choice(["webhook", "queue", "both"]),
              default="webhook", show_default=True,
              help="How SES events reach the newsletter: SNS posts them to `newsletter serve` "
                   "(webhook), or to an SQS queue read by `newsletter events poll`.")
@click.option("--tracking", is_flag=True,
              help="Publish opens and clicks too (SES then adds a tracking pixel and rewrites "
                   "links).")
@pass_env
def setup(env: Env, dry_run: bool, route: str, tracking: bool) -> None:
    """Create what SES sending needs and is missing: the domain identity with Easy DKIM, a
    custom MAIL FROM domain, the configuration set, the SNS topic and event destination, and
    the webhook subscription or an SQS queue with a dead-letter queue.

    Running it again creates nothing new. Prints the DNS records to publish and the settings
    newsletter.toml needs (offering, on a terminal, to write them)."""
    from newsletter.aws import dns
    from newsletter.aws.account import Account
    from newsletter.aws.setup import set_up

    settings = env.settings
    click.echo("Plan (nothing is changed):" if dry_run else "Setting up SES:")
    outcome = set_up(Account(), settings, route=route, tracking=tracking,  # type: ignore[arg-type]
                     dry_run=dry_run, on_step=lambda step: click.echo(
                         "  " + step.describe(dry_run)))
    if not outcome.changed:
        click.echo("Everything was already in place.")
    click.echo("\nPublish these DNS records (zone-file syntax):\n")
    click.echo(dns.zone_snippet(outcome.records))
    if outcome.dkim_pending:
        click.echo("; + three DKIM CNAME records, known once the identity exists (run "
                   "without --dry-run)")
    if outcome.settings:
        _offer_settings(env, outcome.settings, dry_run)
    click.echo("\nThen check everything with `newsletter ses doctor`.")


def _offer_settings(env: Env, values: dict[str, Any], dry_run: bool) -> None:
    import tomlkit

    from newsletter.config import find_config, write_settings

    lines = tomlkit.dumps({"newsletter": values}).strip()
    click.echo(f"\nnewsletter.toml needs:\n\n{lines}\n")
    if "sns_topic_arns" in values:
        click.echo("(`newsletter serve` confirms the webhook's subscription only for topics in "
                   "sns_topic_arns: restart it after this change, then run `newsletter ses "
                   "setup` again if the subscription is still pending.)")
    path = find_config(env.config)
    if not dry_run and sys.stdin.isatty() and click.confirm(f"Write them to {path}?"):
        write_settings(path, values)
        click.echo(f"Wrote {', '.join(values)} to {path}.")


@ses.command()
@click.option("--setup", "for_setup", is_flag=True,
              help="The policy for `ses setup` and `ses doctor` instead of the sender's.")
@pass_env
def policy(env: Env, for_setup: bool) -> None:
    """Print a least-privilege IAM policy (JSON) for the credentials that send (SendEmail on
    this identity and configuration set, the quota, the events queue), or with --setup for
    those that run `ses setup` and `ses doctor`."""
    from newsletter.aws.policies import iam_policy

    document, note = iam_policy(env.settings, for_setup=for_setup)
    if note:
        click.echo(note, err=True)
    click.echo(json.dumps(document, indent=2))


COMMANDS = (ses,)
