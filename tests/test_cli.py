"""The CLI as users meet it: messages, files written, and exit codes that mean something."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from newsletter.cli import main
from tests.conftest import ROOT
from tests.helpers import write_issue


@pytest.fixture
def run(workspace):
    def invoke(*args, env=None):
        result = CliRunner().invoke(main, ["--config", str(workspace / "newsletter.toml"),
                                           *args], env=env, catch_exceptions=False)
        return result
    return invoke


def test_check_a_clean_issue(run):
    result = run("check", "2025-04-asit-highlights")
    assert result.exit_code == 0
    assert result.output.strip() == "2025-04-asit-highlights: 0 error(s), 0 warning(s)"


def test_check_by_path(run, workspace):
    assert run("check", str(workspace / "issues/2025-04-asit-highlights")).exit_code == 0


def test_check_reports_content_errors_with_exit_1(run, workspace):
    write_issue(workspace, "2025-05-bad", "---\nsubject: Hi\ndate: 2025-05-01\n---\n"
                "![](https://example.org/x.png)\n")
    result = run("check", "2025-05-bad")
    assert result.exit_code == 1
    assert "issues/2025-05-bad/issue.md:5: image: https://example.org/x.png: missing alt" \
        in result.output
    assert "Traceback" not in result.output


def test_check_json(run, workspace):
    write_issue(workspace, "2025-05-warn", "---\nsubject: Hi\ndate: 2025-05-01\n---\n"
                "[x](http://example.org)\n")
    result = run("check", "2025-05-warn", "--json")
    assert result.exit_code == 0  # warnings do not fail
    report = json.loads(result.output)
    assert report["ok"] is True and report["errors"] == 0 and report["warnings"] == 3
    assert {f["rule"] for f in report["findings"]} == {"preheader", "links", "translation"}


def test_unknown_issue_is_a_usage_error(run):
    result = run("check", "2031-01-nothing")
    assert result.exit_code == 2
    assert "no issue '2031-01-nothing'" in result.output


def test_broken_configuration_exits_3_and_names_the_key(run, workspace):
    config = workspace / "newsletter.toml"
    config.write_text(config.read_text().replace('primary_color = "#17365d"',
                                                 'primary_color = "navy"'))
    result = run("check", "2025-04-asit-highlights")
    assert result.exit_code == 3
    assert "brand.primary_color: expected a colour like #1d3a6e, got 'navy'" in result.output


def test_missing_configuration(tmp_path):
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "none.toml"), "check", "x"])
    assert result.exit_code == 3
    assert "no configuration file" in result.output


def test_render_writes_three_files_and_a_folder_per_translation(run, tmp_path):
    out = tmp_path / "rendered"
    result = run("render", "2025-04-asit-highlights", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["email.html", "email.txt", "es",
                                                      "message.eml"]
    assert sorted(p.name for p in (out / "es").iterdir()) == [
        "email.html", "email.txt", "message.eml"]
    assert b"Content-Language: es\r\n" in (out / "es" / "message.eml").read_bytes()
    assert (out / "email.html").read_text().startswith("<!DOCTYPE html>")
    message = (out / "message.eml").read_bytes()
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in message


def test_render_a_broken_template_exits_1(run, workspace):
    (workspace / "templates/blocks/text.mjml.j2").write_text("{{ block.nope }}")
    result = run("render", "2025-04-asit-highlights")
    assert result.exit_code == 1
    assert "blocks/text.mjml.j2:1: template error" in result.output


def test_new_scaffolds_an_issue_that_passes_check(run, workspace):
    result = run("new", "Sofia: the closing event & what's next", "--date", "2025-10-01")
    assert result.exit_code == 0, result.output
    folder = workspace / "issues/2025-10-sofia-the-closing-event-what-s-next"
    text = (folder / "issue.md").read_text()
    assert 'subject: "Sofia: the closing event & what\'s next"' in text
    check = run("check", folder.name)
    assert check.exit_code == 0, check.output
    again = run("new", "Sofia: the closing event & what's next", "--date", "2025-10-01")
    assert again.exit_code == 1 and "already exists" in again.output


def test_python_dash_m_and_help():
    result = subprocess.run([sys.executable, "-m", "newsletter", "--help"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    for command in ("new", "check", "render", "preview"):
        assert command in result.stdout


def test_bad_yaml_has_no_traceback_in_a_real_process(workspace):
    write_issue(workspace, "2025-05-yaml", "---\nsubject: [oops\ndate: 2025-05-01\n---\nx\n")
    result = subprocess.run([sys.executable, "-m", "newsletter", "check", "2025-05-yaml"],
                            cwd=workspace, capture_output=True, text=True)
    assert result.returncode == 1
    assert "issue.md:" in result.stderr and "invalid YAML" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
