"""Personalised messages per second on one core: the pre-encoded template vs an EmailMessage each.

    .venv/bin/python bench/message.py [--count 100000] [--naive-count 1000] [--issue SLUG]

The send engine needs ≥ 20,000 messages/s from ``MessageTemplate.personalise``. Recipients are
distinct (address, unsubscribe and preferences tokens) and a third have non-ASCII names, as in
the ASIT list.
The template is measured as the issue is written, and again with ``{{first_name}}`` in the subject.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import time
from collections.abc import Callable
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import localtime, make_msgid
from pathlib import Path

from newsletter.authoring.content import find_issue, load_issue
from newsletter.authoring.render import RenderedIssue, render_issue
from newsletter.config import Settings, load_settings
from newsletter.message import Recipient, build_template

ROOT = Path(__file__).resolve().parents[1]
TARGET = 20_000
NAMES = [("Anna Kovacs", "Anna"), ("Žofia Nováková", "Žofia"), ("John O'Neill", "John"),
         ("Ελένη Παπαδοπούλου", "Ελένη"), ("Marta Rossi", "Marta"), ("Jan Nowak", "Jan")]


def recipients(count: int, base_url: str) -> list[Recipient]:
    return [Recipient(f"reader{i}@example{i % 97}.org", name=NAMES[i % len(NAMES)][0],
                      first_name=NAMES[i % len(NAMES)][1],
                      unsubscribe_url=f"{base_url}/unsubscribe/{secrets.token_urlsafe(48)}",
                      preferences_url=f"{base_url}/preferences/{secrets.token_urlsafe(40)}")
            for i in range(count)]


def naive_message(rendered: RenderedIssue, settings: Settings, person: Recipient) -> bytes:
    """What the template replaces: substitute, then let the stdlib build and encode it all."""
    values = {"{{first_name}}": person.first_name, "{{name}}": person.name,
              "{{email}}": person.email, "{{unsubscribe_url}}": person.unsubscribe_url,
              "{{preferences_url}}": person.preferences_url,
              "{{web_url}}": f"{settings.base_url}/archive/{rendered.slug}/"}
    text, html = rendered.text, rendered.html
    for placeholder, value in values.items():
        text, html = text.replace(placeholder, value), html.replace(placeholder, value)
    local, _, domain = person.email.partition("@")
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = Address(person.name, local, domain)
    message["Subject"] = rendered.subject
    message["Date"] = localtime()
    message["Message-ID"] = make_msgid(domain=settings.domain)
    message["List-Unsubscribe"] = f"<{person.unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    return message.as_bytes(policy=policy.SMTP)


def rate(make: Callable[[Recipient], bytes], people: list[Recipient]) -> tuple[float, float]:
    """Messages per second and the average message size in bytes."""
    size = 0
    start = time.perf_counter()
    for person in people:
        size += len(make(person))
    return len(people) / (time.perf_counter() - start), size / len(people)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--naive-count", type=int, default=1_000)
    parser.add_argument("--issue", default="2025-04-asit-highlights")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # literally one core
    settings = load_settings(ROOT / "newsletter.toml", env={})
    rendered = render_issue(load_issue(find_issue(settings, args.issue), settings), settings)
    people = recipients(args.count, settings.base_url)

    start = time.perf_counter()
    template = build_template(rendered, settings)
    build_ms = (time.perf_counter() - start) * 1000
    fast, size = rate(template.personalise, people)
    personal = build_template(dataclasses.replace(
        rendered, subject="{{first_name}}, " + rendered.subject), settings)
    personal_rate, _ = rate(personal.personalise, people)
    naive, naive_size = rate(lambda p: naive_message(rendered, settings, p),
                             people[: args.naive_count])

    print(f"issue             {args.issue} ({len(rendered.html):,} chars of HTML)")
    print(f"build_template    {build_ms:9.2f} ms, once per issue")
    print(f"personalise       {fast:9,.0f} msgs/s  ({1e6 / fast:.1f} µs each, "
          f"{args.count:,} recipients)  target {TARGET:,}: {'met' if fast >= TARGET else 'MISSED'}")
    print(f"  + subject       {personal_rate:9,.0f} msgs/s  ({1e6 / personal_rate:.1f} µs each) "
          "with {{first_name}} in the subject")
    print(f"EmailMessage      {naive:9,.0f} msgs/s  ({1e6 / naive:.0f} µs each, "
          f"{args.naive_count:,} recipients)  {fast / naive:.0f}x slower")
    print(f"average size      {size:9,.0f} bytes  (EmailMessage: {naive_size:,.0f})")


if __name__ == "__main__":
    main()
