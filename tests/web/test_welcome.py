"""The whole path of a welcome: a sign-up on the real web server, the confirmation link from
the outbox, then the scheduler's passes (real SQLite and PostgreSQL)."""

from __future__ import annotations

import re
import threading
import urllib.parse
import urllib.request

from newsletter.sending.scheduling import Runner
from newsletter.store import Status
from tests.helpers import Recording, write_issue
from tests.test_triggers import WELCOME, WELCOME_TEXT
from tests.web.test_subscribe import confirm_link, confirmations


def post(url: str, fields: dict[str, str]) -> str:
    data = urllib.parse.urlencode(fields).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as answer:
        return str(answer.read().decode())


def test_a_subscriber_confirmed_through_the_form_is_welcomed_at_the_next_pass_only(
        server, ctx, store, web_settings, workspace):
    write_issue(workspace, WELCOME, WELCOME_TEXT)
    store.add("already@example.org", status=Status.ACTIVE)
    transport = Recording()
    scheduler = Runner(web_settings, store, lambda: transport, "runner", threading.Event())
    scheduler.run_pass()  # the welcome goes live

    with urllib.request.urlopen(server + "/subscribe", timeout=10) as page:
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.read().decode())
    assert csrf
    answer = post(server + "/subscribe", {"email": "Nova.Reader@example.org", "name": "Nova",
                                          "csrf": csrf.group(1), "website": ""})
    assert "Check your inbox" in answer
    ctx.signups.drain()
    scheduler.run_pass()
    assert transport.sent == []  # pending: not welcomed before confirming

    link = confirm_link(confirmations(web_settings)[0], web_settings)
    assert "You are subscribed" in post(server + link, {})
    scheduler.run_pass()
    assert transport.recipients() == ["Nova.Reader@example.org"]
    scheduler.run_pass()
    assert transport.recipients() == ["Nova.Reader@example.org"]
