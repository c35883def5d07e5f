"""The wheel is the whole tool: built from this checkout, installed into a fresh venv outside the
repository, it makes and sends a newsletter with nothing of the repository on the path."""

import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from newsletter import __version__
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; its dependencies come from the test venv's
    site-packages (a path line in a .pth file, so that the editable install's own .pth hook is
    not run: only the wheel provides ``newsletter``)."""
    base = tmp_path_factory.mktemp("package")
    wheels = base / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--quiet",
                    "--wheel-dir", str(wheels)], check=True, capture_output=True)
    wheel = next(wheels.glob("newsletter-*.whl"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    dependencies = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    Path(purelib, "dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    return venv


def run(venv: Path, cwd: Path, *args: str, ok: bool = True) -> str:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("NEWSLETTER_", "PYTHON"))}
    env["NEWSLETTER_SECRET_KEY"] = "a-secret-of-the-test-only-1234567890"
    result = subprocess.run([str(venv / "bin" / "newsletter"), *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=120)
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_the_wheel_makes_and_sends_a_newsletter(installed, tmp_path):
    where = subprocess.run([str(installed / "bin" / "python"), "-c",
                            "import newsletter; print(newsletter.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(installed)), where  # the wheel's copy, not this checkout's
    assert __version__ in run(installed, tmp_path, "--version")

    run(installed, tmp_path, "init", "news", "--name", "Hello News",
        "--from", "Hello <news@example.org>", "--base-url", "https://news.example.org")
    folder = tmp_path / "news"
    assert "Created" in run(installed, folder, "new", "Hello world", "--date", "2026-12-01")
    for issue in sorted(p.name for p in (folder / "issues").iterdir()):
        assert "0 error(s)" in run(installed, folder, "check", issue)
    issue = "2026-12-hello-world"
    run(installed, folder, "render", issue, "--out", "out")
    assert "You receive this because" in (folder / "out" / "email.html").read_text()

    run(installed, folder, "subscribers", "add", "reader@example.net", "--name", "Rea Der",
        "--confirmed")
    run(installed, folder, "subscribers", "import", "subscribers/sample.csv")
    assert "4 sent" in run(installed, folder, "send", issue, "--yes")
    sent = list((folder / "outbox" / issue).glob("*.eml"))
    assert len(sent) == 4
    assert b"List-Unsubscribe-Post" in sent[0].read_bytes()

    run(installed, folder, "templates", "copy", "partials/footer.mjml.j2")
    footer = folder / "templates" / "partials" / "footer.mjml.j2"
    footer.write_text(footer.read_text().replace("You receive this because",
                                                 "Hello News reaches you because"))
    run(installed, folder, "render", issue, "--out", "out")
    html = (folder / "out" / "email.html").read_text()
    assert "Hello News reaches you because" in html and "You receive this because" not in html
