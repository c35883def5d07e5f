"""RFC 8058 end to end: the send engine's List-Unsubscribe URL, POSTed to a real server."""

from __future__ import annotations

import email
import email.policy
import re
import urllib.error
import urllib.request
import uuid

import pytest

from newsletter.sending.engine import SendOptions, content_hash, send_issue
from newsletter.store import Status
from newsletter.store.ledger import Ledger
from newsletter.transports.outbox import OutboxTransport

FIRST, NEXT = "2025-04-asit-highlights", "2025-05-twinning-and-training"


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect must fail the test, not be followed."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise AssertionError(f"redirected ({code}) to {newurl}")


def send(rendered, settings, store, outbox):
    ledger = Ledger(store)
    ledger.plan(rendered.slug, rendered.subject, content_hash(rendered))
    return send_issue(rendered, settings, ledger, OutboxTransport(outbox),
                      SendOptions(concurrency=2))


def one_click_url(message_file, settings, server) -> str:
    message = email.message_from_bytes(message_file.read_bytes(), policy=email.policy.default)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    header = re.sub(r"\s+", "", str(message["List-Unsubscribe"]))
    url = re.search(r"<(https://[^>]+)>", header)
    assert url, header
    assert url.group(1).startswith(f"{settings.base_url}/unsubscribe/")
    return server + url.group(1)[len(settings.base_url):]


def post(url: str, body: bytes, content_type: str):
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type})
    opener = urllib.request.build_opener(NoRedirects)  # no cookie handler: no cookies at all
    return opener.open(request, timeout=10)


@pytest.mark.parametrize("encoding", ["form", "multipart"])
def test_one_click_post_to_the_url_the_engine_sent(server, web_settings, store, add,
                                                   asit_rendered, tmp_path, encoding):
    people = [add(f"reader{n}@example.org", name=f"Reader {n}") for n in range(3)]
    leaving = people[1]
    report = send(asit_rendered[FIRST], web_settings, store, tmp_path / "outbox")
    assert report.counts["sent"] == 3
    # The next issue is planned while they are still active: its send must skip them.
    Ledger(store).plan(NEXT, asit_rendered[NEXT].subject, content_hash(asit_rendered[NEXT]))

    url = one_click_url(tmp_path / "outbox" / FIRST / f"{leaving.id}.eml", web_settings,
                        server)
    if encoding == "form":
        body, kind = b"List-Unsubscribe=One-Click", "application/x-www-form-urlencoded"
    else:
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\""
                f"\r\n\r\nOne-Click\r\n--{boundary}--\r\n").encode()
        kind = f"multipart/form-data; boundary={boundary}"
    with post(url, body, kind) as response:
        assert response.status == 200 and response.geturl() == url
        assert response.headers.get("Set-Cookie") is None
        response.read()

    left = store.get(leaving.id)
    assert (left.status, left.status_reason, left.status_issue) == (
        Status.UNSUBSCRIBED, "one-click", FIRST)
    assert all(store.get(p.id).status is Status.ACTIVE for p in people if p is not leaving)

    report = send(asit_rendered[NEXT], web_settings, store, tmp_path / "outbox")
    assert (report.counts["sent"], report.counts["skipped"]) == (2, 1)
    assert not (tmp_path / "outbox" / NEXT / f"{leaving.id}.eml").exists()


def test_a_damaged_link_over_http_is_a_400(server, store, add):
    person = add("reader@example.org")
    with pytest.raises(urllib.error.HTTPError) as refused:
        post(f"{server}/unsubscribe/not-a-token", b"List-Unsubscribe=One-Click",
             "application/x-www-form-urlencoded")
    assert refused.value.code == 400
    refused.value.close()
    assert store.get(person.id).status is Status.ACTIVE
