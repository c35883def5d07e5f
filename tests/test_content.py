import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from newsletter.authoring.content import (
    Button,
    Callout,
    Columns,
    Image,
    Partners,
    Text,
    find_issue,
    load_issue,
    parse_send_at,
)
from newsletter.errors import ContentError, IssueNotFound
from tests.helpers import load, write_issue

GOOD = """
---
subject: Hello
preheader: Pre
date: 2025-05-01
hero:
  kicker: News
  title: The title
---
Intro text for {{first_name}}.

## First

- **Lead:** item one
- item two

![A chart of results](https://example.org/chart.png)

::: button
[Read more](https://example.org/more)
:::

## Second

::: columns
![Left picture](https://example.org/left.png)

---

Right text with a [link]({{web_url}}).
:::

::: callout
Remember this.
:::

::: partners
:::
"""


def problems(excinfo):
    return [str(p) for p in excinfo.value.problems]


def test_a_good_issue_becomes_sections_and_blocks(workspace, workspace_settings):
    issue = load(workspace, "2025-05-good", GOOD, workspace_settings)
    assert issue.slug == "2025-05-good"
    assert issue.meta.subject == "Hello" and issue.meta.hero.title == "The title"
    assert [type(b) for b in issue.intro] == [Text]
    assert "{{first_name}}" in issue.intro[0].html
    first, second = issue.sections
    assert first.title == "First"
    assert [type(b) for b in first.blocks] == [Text, Image, Button]
    assert "<strong>Lead:</strong> item one" in first.blocks[0].html
    assert first.blocks[1] == Image("https://example.org/chart.png", "A chart of results")
    assert first.blocks[2] == Button("Read more", "https://example.org/more")
    columns, callout, partners = second.blocks
    assert isinstance(columns, Columns) and len(columns.columns) == 2
    assert isinstance(columns.columns[0][0], Image)
    assert 'href="{{web_url}}"' in columns.columns[1][0].html  # placeholder not %-encoded
    assert isinstance(callout, Callout) and "Remember this." in callout.html
    assert isinstance(partners, Partners)
    assert partners.partners == workspace_settings.footer.partners


def test_every_problem_is_reported_with_file_and_line(workspace, workspace_settings):
    text = """
    ---
    subject: ""
    date: someday
    colour: red
    ---
    # A title in the body

    ![](https://example.org/a.png)

    ::: carousel
    :::

    Dear {{First Name}},

    ::: button
    no link here
    :::
    """
    with pytest.raises(ContentError) as caught:
        load(workspace, "2025-05-bad", text, workspace_settings)
    path = workspace / "issues" / "2025-05-bad" / "issue.md"
    assert problems(caught) == [
        f"{path}:2: subject: String should have at least 1 character",
        f"{path}:3: date: Input should be a valid date or datetime, input is too short",
        f"{path}:4: colour: unknown field (known: subject, preheader, date, send_at, audience, "
        "template, hero, trigger)",
        f"{path}:6: heading: use '##' for section headings; the issue title goes in the front "
        "matter (hero.title)",
        f"{path}:8: image: https://example.org/a.png: missing alt text "
        "(write ![what the image shows](file.jpg))",
        f"{path}:10: block: unknown block '::: carousel' (known: button, columns, partners, "
        "callout)",
        f"{path}:13: placeholder: {{{{First Name}}}} is not a placeholder: did you mean "
        "{{first_name}}? use {{first_name}}, {{name}}, {{email}}, {{unsubscribe_url}}, "
        "{{preferences_url}}, {{web_url}} or a subscriber attribute as the import names it "
        "(e.g. {{organisation}})",
        f"{path}:15: button: put a link inside: [Read the report](https://…)",
    ]


def test_yaml_syntax_error_points_at_the_line(workspace, workspace_settings):
    text = "---\nsubject: Hi\ndate: 2025-01-01\nhero: [unclosed\n---\nBody\n"
    with pytest.raises(ContentError) as caught:
        load(workspace, "2025-05-yaml", text, workspace_settings)
    (problem,) = caught.value.problems
    assert problem.field == "front matter" and problem.line in (4, 5)
    assert "invalid YAML" in problem.message


def test_missing_front_matter(workspace, workspace_settings):
    with pytest.raises(ContentError, match=r"issue.md:1: front matter: the file must start"):
        load(workspace, "2025-05-nofm", "Just text\n", workspace_settings)


def test_unclosed_front_matter(workspace, workspace_settings):
    with pytest.raises(ContentError, match="no closing '---'"):
        load(workspace, "2025-05-open", "---\nsubject: x\n", workspace_settings)


def test_nested_field_errors_point_at_the_nested_line(workspace, workspace_settings):
    text = "---\nsubject: Hi\ndate: 2025-01-01\nhero:\n  kicker: K\n  titel: T\n---\nBody\n"
    with pytest.raises(ContentError) as caught:
        load(workspace, "2025-05-hero", text, workspace_settings)
    fields = {(p.field, p.line) for p in caught.value.problems}
    assert ("hero.title", 4) in fields and ("hero.titel", 6) in fields


def test_local_images_must_exist_and_are_published_under_base_url(workspace, workspace_settings):
    folder = write_issue(workspace, "2025-05-img", """
    ---
    subject: Images
    date: 2025-05-01
    hero:
      title: T
      image: hero.jpg
    ---
    ![Team photo](team.jpg)

    Inline ![icon](missing.png) here.
    """)
    (folder / "team.jpg").write_bytes(b"jpg")
    with pytest.raises(ContentError) as caught:
        load(workspace, "2025-05-img", (folder / "issue.md").read_text(), workspace_settings)
    messages = problems(caught)
    assert any(":6: hero.image: hero.jpg: no such file" in m for m in messages)
    assert any(":6: hero.alt: the hero image needs alt text" in m for m in messages)
    assert any(":10: image: missing.png: no such file" in m for m in messages)
    assert not any("team.jpg" in m for m in messages)


def test_local_image_url(workspace, workspace_settings):
    folder = write_issue(workspace, "2025-05-pic", "---\nsubject: S\ndate: 2025-05-01\n---\n"
                         "![Team photo](team.jpg)\n")
    (folder / "team.jpg").write_bytes(b"jpg")
    issue = load(workspace, "2025-05-pic", (folder / "issue.md").read_text(), workspace_settings)
    assert issue.intro == (Image(f"{workspace_settings.base_url}/archive/2025-05-pic/team.jpg",
                                 "Team photo"),)
    assert issue.assets == ((folder / "team.jpg").resolve(),)


def test_images_may_not_escape_the_issue_folder(workspace, workspace_settings):
    (workspace / "issues" / "secret.png").write_bytes(b"x")
    with pytest.raises(ContentError, match=r"\.\./secret\.png: no such file"):
        load(workspace, "2025-05-esc", "---\nsubject: S\ndate: 2025-05-01\n---\n"
             "![Secret](../secret.png)\n", workspace_settings)


def test_columns_need_two_or_three_and_a_blank_line_before_the_separator(
        workspace, workspace_settings):
    text = """
    ---
    subject: S
    date: 2025-05-01
    ---
    ::: columns
    only one
    :::

    ::: columns
    left
    ---
    right
    :::
    """
    with pytest.raises(ContentError) as caught:
        load(workspace, "2025-05-cols", text, workspace_settings)
    messages = problems(caught)
    assert any(":5: columns: expected 2 or 3 columns separated by '---' lines, found 1" in m
               for m in messages)
    assert any(":10: columns: a '---' right under text makes it a heading" in m
               for m in messages)


def test_send_at_forms():
    sofia = parse_send_at("2025-10-06 09:00 Europe/Sofia")
    assert sofia == dt.datetime(2025, 10, 6, 9, 0, tzinfo=ZoneInfo("Europe/Sofia"))
    assert sofia.utcoffset() == dt.timedelta(hours=3)
    assert parse_send_at("2025-10-06T09:00+02:00").utcoffset() == dt.timedelta(hours=2)
    with pytest.raises(ValueError, match="add a UTC offset"):
        parse_send_at("2025-10-06 09:00")
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        parse_send_at("2025-10-06 09:00 Mars/Olympus")


def test_send_at_error_in_front_matter(workspace, workspace_settings):
    text = "---\nsubject: S\ndate: 2025-05-01\nsend_at: tomorrow\n---\nx\n"
    with pytest.raises(ContentError, match=r"issue.md:4: send_at: expected a time like"):
        load(workspace, "2025-05-when", text, workspace_settings)


def test_the_subject_may_hold_names_and_attributes_but_not_links(workspace, workspace_settings):
    issue = load(workspace, "2025-05-names", "---\nsubject: 'News for {{ first_name }} at "
                 "{{organisation}}'\ndate: 2025-05-01\n---\nDear {{stadt_ort}}\n",
                 workspace_settings)
    assert issue.meta.subject == "News for {{ first_name }} at {{organisation}}"
    for wrong, why in (("{{unsubscribe_url}}", r"is a link and cannot be filled in the subject"),
                       ("{{preferences_url}}", r"is a link and cannot be filled in the subject"),
                       ("{{Organisation}}", r"is not a placeholder: did you mean "
                                            r"\{\{organisation\}\}\?")):
        text = f"---\ndate: 2025-05-01\nsubject: 'Leave: {wrong}'\n---\nx\n"
        with pytest.raises(ContentError, match=r"issue.md:3: subject: \{\{.*\}\} " + why):
            load(workspace, "2025-05-links", text, workspace_settings)


def test_content_is_not_html(workspace, workspace_settings):
    issue = load(workspace, "2025-05-esc", "---\nsubject: S\ndate: 2025-05-01\n---\n"
                 "Use <script>alert(1)</script> & 2 < 3\n", workspace_settings)
    assert "&lt;script&gt;" in issue.intro[0].html and "<script>" not in issue.intro[0].html


def test_not_utf8(workspace, workspace_settings):
    folder = workspace / "issues" / "2025-05-latin1"
    folder.mkdir()
    (folder / "issue.md").write_bytes("---\nsubject: Café\n---\n".encode("latin-1"))
    with pytest.raises(ContentError, match=r"issue\.md:1: file: not UTF-8"):
        load_issue(folder, workspace_settings)


def test_find_issue_by_slug_or_path(settings):
    folder = find_issue(settings, "2025-04-asit-highlights")
    assert find_issue(settings, str(folder)) == folder
    assert find_issue(settings, str(folder / "issue.md")) == folder
    with pytest.raises(IssueNotFound, match="known issues: 2025-04-asit-highlights"):
        find_issue(settings, "nope")
