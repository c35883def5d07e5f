"""The CLI starts light: ``--help`` (which shell completion runs on every tab) loads click and
the standard library only, and ``check`` only what rendering needs, never the AWS, web or
database libraries. Checked in a fresh interpreter, since this test process has loaded them all;
how fast that makes it is measured in bench/cli.py, not asserted here."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# Needed only to send, to serve the web app or to reach the database.
NOT_FOR_CHECK = {"boto3", "botocore", "flask", "werkzeug", "waitress", "sqlalchemy", "alembic",
                 "psycopg"}
# Needed only once a command runs: configuration, content, rendering.
NOT_FOR_HELP = NOT_FOR_CHECK | {"pydantic", "yaml", "markdown_it", "jinja2", "mjml", "premailer",
                                "lxml", "requests"}

# Runs the command as `python -m newsletter` does, then lists what it loaded.
PROBE = """
import json, runpy, sys
report, sys.argv = sys.argv[1], ["newsletter", *sys.argv[2:]]
try:
    runpy.run_module("newsletter", run_name="__main__")
    code = 0
except SystemExit as exit:
    code = exit.code
with open(report, "w") as file:
    json.dump({"exit": code, "file": sys.modules["newsletter"].__file__,
               "modules": sorted(sys.modules)}, file)
"""


def run_newsletter(tmp_path, *args, env=None):
    """The command's output and the top-level packages it loaded; it must succeed."""
    report = tmp_path / "modules.json"
    environment = {**os.environ, "NEWSLETTER_SECRET_KEY": "test-secret-key", **(env or {})}
    environment.pop("NEWSLETTER_CONFIG", None)
    result = subprocess.run([sys.executable, "-c", PROBE, str(report), *args], cwd=ROOT,
                            env=environment, capture_output=True, text=True, timeout=120)
    assert report.exists(), result.stderr
    loaded = json.loads(report.read_text())
    assert loaded["exit"] in (0, None), result.stdout + result.stderr
    assert loaded["file"].startswith(str(ROOT)), loaded["file"]  # this tree's code, not another
    return result.stdout, {name.partition(".")[0] for name in loaded["modules"]}


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["send", "--help"],
                                  ["subscribers", "list", "--help"], ["events", "poll", "--help"]])
def test_help_loads_no_library_beyond_click(tmp_path, args):
    output, loaded = run_newsletter(tmp_path, *args)
    assert "newsletter" in output
    assert "click" in loaded
    assert not loaded & NOT_FOR_HELP, f"loaded {sorted(loaded & NOT_FOR_HELP)}"


def test_shell_completion_loads_no_library_beyond_click(tmp_path):
    output, loaded = run_newsletter(tmp_path, env={"_NEWSLETTER_COMPLETE": "bash_complete",
                                                   "COMP_WORDS": "newsletter sub",
                                                   "COMP_CWORD": "1"})
    assert "subscribers" in output
    assert not loaded & NOT_FOR_HELP, f"loaded {sorted(loaded & NOT_FOR_HELP)}"


def test_check_loads_no_aws_web_or_database_library(tmp_path):
    output, loaded = run_newsletter(tmp_path, "check", "2025-04-asit-highlights")
    assert "2025-04-asit-highlights: 0 error(s)" in output
    assert {"pydantic", "premailer"} <= loaded  # it did render and lint the email
    assert not loaded & NOT_FOR_CHECK, f"loaded {sorted(loaded & NOT_FOR_CHECK)}"


def test_the_cli_long_poll_is_the_library_s():
    from newsletter.cli import events as cli_events
    from newsletter.feedback import events

    assert cli_events.SQS_WAIT == events.SQS_WAIT
