import dataclasses

import pytest

from newsletter.authoring.checks import check_message, check_rendered, has_errors
from newsletter.authoring.render import render_issue
from tests.conftest import ASIT_ISSUES
from tests.helpers import load


def rules(findings, severity=None):
    return {f.rule for f in findings if severity in (None, f.severity)}


@pytest.mark.parametrize("slug", ASIT_ISSUES)
def test_the_asit_issues_are_clean(settings, asit_rendered, slug):
    assert check_rendered(asit_rendered[slug], settings) == []


def crafted(workspace, settings, body, front=""):
    text = f"---\nsubject: Crafted\npreheader: P\ndate: 2025-05-01\n{front}---\n{body}\n"
    return render_issue(load(workspace, "2025-05-crafted", text, settings), settings)


def test_relative_and_plain_http_links(workspace, workspace_settings):
    rendered = crafted(workspace, workspace_settings,
                       "[a](report.pdf) [b](http://example.org) [c](mailto:x@example.org) "
                       "[d](https://example.org)")
    findings = check_rendered(rendered, workspace_settings)
    assert [(f.severity, f.rule, f.message) for f in findings] == [
        ("error", "links", "'report.pdf' is not an absolute https:// link (relative links "
                           "break in mail clients)"),
        ("warning", "links", "http://example.org is not https"),
    ]
    assert has_errors(findings)


def test_a_link_that_is_only_an_attribute_is_refused(workspace, workspace_settings):
    """An attribute could hold anything (javascript:, a relative path): it may fill a part of
    an https:// link, never the whole of one. Our own links may."""
    rendered = crafted(workspace, workspace_settings,
                       "[a]({{homepage}}) [b](https://example.org/{{city}}) [c]({{web_url}})")
    findings = check_rendered(rendered, workspace_settings)
    assert [(f.severity, f.rule, f.message) for f in findings] == [
        ("error", "links", "'{{homepage}}' is not an absolute https:// link (relative links "
                           "break in mail clients)")]


def test_the_preferences_link_may_be_written_in_an_issue(workspace, workspace_settings):
    """``{{preferences_url}}`` is one of our own links: a whole link target, like the
    unsubscribe link, and no unknown placeholder."""
    rendered = crafted(workspace, workspace_settings,
                       "Choose your topics on [your page]({{preferences_url}}).")
    assert 'href="{{preferences_url}}"' in rendered.html
    assert check_rendered(rendered, workspace_settings) == []


def test_missing_preheader_and_long_subject(workspace, workspace_settings):
    text = f"---\nsubject: {'A very long subject ' * 5}\ndate: 2025-05-01\n---\nx\n"
    rendered = render_issue(load(workspace, "2025-05-s", text, workspace_settings),
                            workspace_settings)
    findings = check_rendered(rendered, workspace_settings)
    assert rules(findings, "warning") == {"preheader", "subject"}
    assert not has_errors(findings)


def test_size_budget(workspace, workspace_settings):
    paragraph = "Words that make the email longer and longer. " * 40
    near = crafted(workspace, workspace_settings, "\n\n".join([paragraph] * 40))
    assert [(f.severity, f.rule) for f in check_rendered(near, workspace_settings)] == [
        ("warning", "size")]
    over = crafted(workspace, workspace_settings, "\n\n".join([paragraph] * 50))
    assert [(f.severity, f.rule) for f in check_rendered(over, workspace_settings)] == [
        ("error", "size")]


def test_images_without_alt_in_a_template(workspace, workspace_settings):
    template = workspace / "templates/blocks/image.mjml.j2"
    template.write_text('<mj-image src="{{ block.src }}" />\n')
    rendered = crafted(workspace, workspace_settings, "![Chart](https://example.org/c.png)")
    findings = check_rendered(rendered, workspace_settings)
    assert [(f.rule, f.message) for f in findings] == [
        ("alt-text", "image https://example.org/c.png has no alt text")]


def test_missing_unsubscribe_and_unknown_placeholder(workspace, workspace_settings, settings):
    rendered = crafted(workspace, workspace_settings, "x")
    rendered = dataclasses.replace(rendered, html=rendered.html.replace(
        "{{unsubscribe_url}}", "{{Unsubscribe URL}}"))
    findings = check_rendered(rendered, workspace_settings)
    assert [(f.severity, f.rule, f.message) for f in findings] == [
        ("error", "links", "'{{Unsubscribe URL}}' is not an absolute https:// link (relative "
                           "links break in mail clients)"),
        ("error", "unsubscribe", "the HTML part has no {{unsubscribe_url}} link"),
        ("error", "placeholders", "{{Unsubscribe URL}} is not a placeholder: did you mean "
         "{{unsubscribe_url}}? use {{first_name}}, {{name}}, {{email}}, {{unsubscribe_url}}, "
         "{{preferences_url}}, {{web_url}} or a subscriber attribute as the import names it "
         "(e.g. {{organisation}}) in the HTML part"),
    ]


def test_overlong_lines_once_encoded():
    assert check_message(b"Subject: hi\r\n\r\n" + b"x" * 998 + b"\r\n") == []
    (finding,) = check_message(b"Subject: hi\r\n\r\n" + b"x" * 999 + b"\r\n")
    assert (finding.severity, finding.rule) == ("error", "line-length")
    assert "999 octets" in finding.message


def test_even_an_absurd_subject_encodes_within_the_line_limit(workspace, workspace_settings):
    rendered = crafted(workspace, workspace_settings, "x")
    long_subject = dataclasses.replace(rendered, subject="x" * 2000)
    assert "line-length" not in rules(check_rendered(long_subject, workspace_settings))
