import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from newsletter.authoring.render import block_rows, find_unbalanced_tag, html_text, render_issue
from newsletter.errors import RenderError
from tests.conftest import ASIT_ISSUES
from tests.helpers import load

# The ASIT newsletter text as the project supplied it, kept beside the tests (unedited).
SEED = Path(__file__).resolve().parent / "data" / "asit-newsletter.txt"
# The seed's obvious typos, fixed in the issues.
SEED_FIXES = {"stakeholdrs": "stakeholders", "March April": "March–April"}


class TextContent(HTMLParser):
    """The visible text of an HTML document (no <style>, <title> or comments)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("style", "title", "head")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "title", "head")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = TextContent()
    parser.feed(html)
    return normalise(" ".join(parser.parts))


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\xa0", " ")).strip().casefold()


def seed_fragments() -> list[str]:
    """Every sentence, heading and bullet of the seed, as it should read in the newsletter."""
    fragments = []
    for line in SEED.read_text(encoding="utf-8").splitlines():
        line = line.strip().removeprefix("- ").removeprefix("· ").replace("**", "")
        for typo, fix in SEED_FIXES.items():
            line = line.replace(typo, fix)
        if not line:
            continue
        partner = re.fullmatch(r"(.+) ([a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}(?:/\S*)?)", line)
        fragments += list(partner.groups()) if partner else [line]
    return fragments


def test_every_seed_sentence_is_in_the_html_and_the_text_of_an_issue(asit_rendered):
    parts = [(visible_text(r.html), normalise(r.text)) for r in asit_rendered.values()]
    missing = [fragment for fragment in seed_fragments()
               if not any(normalise(fragment) in html and normalise(fragment) in text
                          for html, text in parts)]
    assert len(seed_fragments()) > 40
    assert missing == []


@pytest.mark.parametrize("slug", ASIT_ISSUES)
def test_email_structure(asit_rendered, slug):
    rendered = asit_rendered[slug]
    html = rendered.html
    assert html.startswith("<!DOCTYPE html>")
    assert '<html lang="en"' in html
    assert re.search(r"<style[^>]*>[^<]*@media only screen and \(max-width: ?480px\)", html)
    assert "!important" in html  # the mobile rules survive premailer
    assert 'style="' in html and "<h2" in html
    # inlined CSS: the h2 rule of the head now sits on the element itself
    assert re.search(r'<h2 style="[^"]*font-size:\s*22px', html)
    assert 'href="{{unsubscribe_url}}"' in html and 'href="{{web_url}}"' in html
    assert "{{unsubscribe_url}}" in rendered.text and "{{web_url}}" in rendered.text
    assert "@import" not in html and "fonts.googleapis" not in html  # no network fonts
    assert rendered.text.endswith("\n") and "\n\n\n" not in rendered.text


def test_sections_lists_links_and_buttons(asit_rendered):
    rendered = asit_rendered["2025-05-twinning-and-training"]
    for title in ("Project Highlights", "Key Activities and Outcomes", "Stay Connected"):
        assert re.search(rf"<h2[^>]*>{title}</h2>", rendered.html)
        assert f"{title.upper()}\n{'-' * len(title)}" in rendered.text
    assert rendered.html.count("<li") == 3
    assert re.search(r"<strong[^>]*>Twinning Events:</strong>", rendered.html)
    assert "- Twinning Events: Partners across Europe" in rendered.text
    assert re.search(r'<a href="https://asit-project.eu"[^>]*>[^<]*Visit the ASIT website',
                     rendered.html)
    assert "Visit the ASIT website: https://asit-project.eu" in rendered.text
    assert "Coordinator: MoISR – Ministry of Interior of the Slovak Republic" in rendered.text


def test_images_keep_alt_text_and_columns_stack(workspace, workspace_settings):
    issue = load(workspace, "2025-05-img", """
    ---
    subject: Pictures
    date: 2025-05-01
    ---
    ::: columns
    [![Map of the partners](https://example.org/map.png)](https://example.org/map)

    ---

    Text beside the map for {{first_name}}.
    :::
    """, workspace_settings)
    rendered = render_issue(issue, workspace_settings)
    assert re.search(r'<img alt="Map of the partners"[^>]*src="https://example.org/map.png"',
                     rendered.html)
    assert 'href="https://example.org/map"' in rendered.html
    assert "mj-column-per-50" in rendered.html  # two columns on desktop, stacked on phones
    assert "[Map of the partners] <https://example.org/map>" in rendered.text
    assert "Text beside the map for {{first_name}}." in rendered.text


def test_content_is_escaped_into_mjml(workspace, workspace_settings):
    issue = load(workspace, "2025-05-lt", """
    ---
    subject: "Less < more & <b>bold</b>"
    date: 2025-05-01
    hero:
      title: "Tom & Jerry <3"
    ---
    1 < 2 and </mj-text> stays text.
    """, workspace_settings)
    rendered = render_issue(issue, workspace_settings)
    assert "Tom &amp; Jerry &lt;3" in rendered.html
    assert "&lt;/mj-text&gt; stays text" in rendered.html
    assert "<title>Less &lt; more &amp; &lt;b&gt;bold&lt;/b&gt;</title>" in rendered.html
    assert "1 < 2 and </mj-text> stays text." in rendered.text


def test_the_letter_layout(workspace, workspace_settings, asit_rendered):
    text = (workspace / "issues/2025-04-asit-highlights/issue.md").read_text()
    issue = load(workspace, "2025-04-letter", text.replace("hero:", "template: letter\nhero:", 1),
                 workspace_settings)
    rendered = render_issue(issue, workspace_settings)
    assert rendered.html != asit_rendered["2025-04-asit-highlights"].html
    assert "ASIT NEWSLETTER · HIGHLIGHTS" in rendered.html
    assert rendered.text == asit_rendered["2025-04-asit-highlights"].text


def test_unknown_layout(workspace, workspace_settings):
    issue = load(workspace, "2025-05-x", "---\nsubject: S\ndate: 2025-05-01\ntemplate: fancy\n"
                 "---\nx\n", workspace_settings)
    with pytest.raises(RenderError, match=r"template not found: layouts/fancy\.mjml\.j2"):
        render_issue(issue, workspace_settings)


def test_template_error_names_template_and_line(workspace, workspace_settings):
    (workspace / "templates/blocks/button.mjml.j2").write_text(
        "<mj-button href=\"{{ block.url }}\">{{ block.lable }}</mj-button>\n")
    issue = load(workspace, "2025-05-x", "---\nsubject: S\ndate: 2025-05-01\n---\n"
                 "::: button\n[Go](https://example.org)\n:::\n", workspace_settings)
    with pytest.raises(RenderError, match=r"blocks/button.mjml.j2:1: template error: .*lable"):
        render_issue(issue, workspace_settings)


def test_template_syntax_error(workspace, workspace_settings):
    (workspace / "templates/blocks/text.mjml.j2").write_text("{% if %}\n")
    issue = load(workspace, "2025-05-x", "---\nsubject: S\ndate: 2025-05-01\n---\nx\n",
                 workspace_settings)
    with pytest.raises(RenderError, match=r"blocks/text.mjml.j2:1: template syntax"):
        render_issue(issue, workspace_settings)


def test_mjml_structure_error_is_traced_to_its_template(workspace, workspace_settings):
    (workspace / "templates/blocks/text.mjml.j2").write_text(
        '<mj-text css-class="body-text">{{ block.html | safe }}\n')
    issue = load(workspace, "2025-05-x", "---\nsubject: S\ndate: 2025-05-01\n---\nx\n",
                 workspace_settings)
    with pytest.raises(RenderError) as caught:
        render_issue(issue, workspace_settings)
    message = str(caught.value)
    assert message.startswith("MJML structure error: blocks/text.mjml.j2: found </mj-column>")
    assert "but <mj-text> opened at line" in message


def test_find_unbalanced_tag():
    assert find_unbalanced_tag("<mjml><mj-body><mj-image /></mj-body></mjml>") is None
    assert find_unbalanced_tag("<mjml><mj-body>") == "(layout): <mj-body> opened at line 1 is " \
                                                     "never closed"
    assert "nothing is open" in find_unbalanced_tag("</mj-body>")


def test_block_rows_groups_runs_and_columns(workspace, workspace_settings):
    issue = load(workspace, "2025-05-rows", """
    ---
    subject: S
    date: 2025-05-01
    ---
    one

    ::: button
    [Go](https://example.org)
    :::

    ::: columns
    a

    ---

    b
    :::

    after
    """, workspace_settings)
    rows = block_rows(issue.intro)
    assert [[len(column) for column in row] for row in rows] == [[2], [1, 1], [1]]


def test_html_text():
    html = ('<p>See <a href="https://example.org/x">the report</a> or '
            '<a href="https://example.org">example.org</a>.</p>\n<ul>\n<li>a\nb</li>\n<li>c</li>\n</ul>')
    assert html_text(html) == ("See the report <https://example.org/x> or example.org.\n\n"
                               "- a b\n- c")


def test_rendering_is_pure_and_repeatable(settings, asit_rendered):
    from newsletter.authoring.content import find_issue, load_issue
    again = render_issue(load_issue(find_issue(settings, ASIT_ISSUES[0]), settings), settings)
    assert again == asit_rendered[ASIT_ISSUES[0]]


def test_a_personalised_subject_as_the_title_keeps_its_placeholder(workspace, workspace_settings):
    """Without a hero the subject is the text part's title, in capitals: not its placeholder."""
    issue = load(workspace, "2026-03-plain", """\
        ---
        subject: "News for {{first_name}}"
        date: 2026-03-02
        ---
        Hello.
        """, workspace_settings)
    text = render_issue(issue, workspace_settings).text
    assert "NEWS FOR {{first_name}}" in text and "FIRST_NAME" not in text
