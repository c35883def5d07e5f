"""``newsletter subscribers …`` and ``newsletter db upgrade`` as users meet them.

Exit codes: 0 ok, 1 a problem (bad rows, unknown address, refused change), 2 usage, 3 config.
"""

import json

import pytest

from newsletter.store import Status, Store
from tests.conftest import ROOT

SAMPLE = ROOT / "subscribers" / "sample.csv"


@pytest.fixture
def db_url(folder):
    return f"sqlite:///{folder / 'subscribers' / 'newsletter.db'}"


def test_import_the_sample_list(cli, db_url):
    result = cli("subscribers", "import", str(SAMPLE), "--rejects", "/dev/null")
    assert result.exit_code == 0, result.output
    assert "25 rows: 25 added, 0 updated, 0 unchanged, 0 suppressed, 0 duplicates, 0 rejected" \
        in result.output
    with Store.open(db_url) as store:
        eleni = store.get_by_email("e.papadopoulou@hellenic-police.example.org")
        assert eleni.first_name == "Eleni" and "police" in eleni.tags
        assert eleni.attributes["organisation"] == "Hellenic Police"
        assert store.count(statuses=[Status.ACTIVE]) == 25


def test_import_with_bad_rows_exits_1_and_says_where(cli, folder):
    path = folder / "people.csv"
    path.write_text("email,name\nanna@example.org,Anna\nnot-an-address,X\n"
                    "ANNA@example.org,Again\n", encoding="utf-8")
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 1
    assert "people.csv: line 3: invalid email address 'not-an-address'" in result.output
    assert "people.csv: line 4: repeats an address earlier in the file (line 2)" in result.output
    assert "3 rows: 1 added, 0 updated, 0 unchanged, 0 suppressed, 1 duplicates, 1 rejected" \
        in result.output
    assert (folder / "people.rejects.csv").is_file() and "Traceback" not in result.output


def test_import_of_an_unreadable_file_exits_1_without_a_traceback(cli, folder):
    path = folder / "latin1.csv"
    path.write_bytes("email,name\nanna@example.org,Ana Mª\n".encode("latin-1"))
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 1 and "not valid utf-8" in result.output
    assert "--encoding" in result.output and "Traceback" not in result.output
    assert cli("subscribers", "import", str(path), "--encoding", "latin-1").exit_code == 0


def test_import_options(cli, folder, db_url):
    path = folder / "list.csv"
    path.write_text("Mail;Full Name;Notes\nanna@example.org;Anna;x\n", encoding="utf-8")
    result = cli("subscribers", "import", str(path), "--map", "Notes=-", "--tag", "Imported",
                 "--status", "pending")
    assert result.exit_code == 0, result.output
    with Store.open(db_url) as store:
        anna = store.get_by_email("anna@example.org")
    assert (anna.name, anna.status, anna.tags, anna.attributes) == (
        "Anna", Status.PENDING, ["imported"], {})


def test_add_show_list_remove(cli):
    result = cli("subscribers", "add", "anna@example.org", "--name", "Dr. Anna Nowak",
                 "--attr", "organisation=KWP Kraków", "--tag", "police", "--confirmed")
    assert result.exit_code == 0 and "added anna@example.org as active" in result.output
    assert "pending" in cli("subscribers", "add", "jan@example.org").output
    again = cli("subscribers", "add", "ANNA@example.org")
    assert again.exit_code == 1 and "already on the list" in again.output
    shown = cli("subscribers", "show", "Anna@Example.org").output
    assert "first name:     Anna" in shown and "organisation: KWP Kraków" in shown
    listed = cli("subscribers", "list", "--tag", "police")
    assert "anna@example.org" in listed.output and "jan@example.org" not in listed.output
    assert "1 of 1 subscribers" in listed.output
    assert cli("subscribers", "list", "--status", "pending", "--limit", "5").output.count(
        "@example.org") == 1
    removed = cli("subscribers", "remove", "anna@example.org")
    assert removed.exit_code == 0 and "record kept" in removed.output
    assert "unsubscribed since" in cli("subscribers", "show", "anna@example.org").output
    refused = cli("subscribers", "add", "anna@example.org", "--confirmed")
    assert refused.exit_code == 1 and "resubscribe" in refused.output
    assert cli("subscribers", "add", "anna@example.org", "--confirmed",
               "--resubscribe").exit_code == 0


def test_unknown_and_invalid_addresses_exit_1(cli):
    for command in ("show", "remove", "export-data"):
        result = cli("subscribers", command, "nobody@example.org")
        assert result.exit_code == 1 and "Traceback" not in result.output
    result = cli("subscribers", "show", "not an address")
    assert result.exit_code == 1 and "invalid email address" in result.output


def test_export_to_stdout_and_to_files(cli, folder):
    cli("subscribers", "add", "anna@example.org", "--name", "Anna", "--confirmed",
        "--attr", "country=PL", "--language", "pl")
    cli("subscribers", "add", "jan@example.org")
    result = cli("subscribers", "export")
    assert result.output.splitlines() == ["email,name,status,tags,language,country",
                                          "anna@example.org,Anna,active,,pl,PL",
                                          "jan@example.org,,pending,,,"]
    as_json = json.loads(cli("subscribers", "export", "--format", "json", "--status",
                             "pending").output)
    assert [r["email"] for r in as_json] == ["jan@example.org"]
    result = cli("subscribers", "export", str(folder / "all.json"))
    assert result.exit_code == 0 and "exported 2 subscribers" in result.output
    assert len(json.loads((folder / "all.json").read_text(encoding="utf-8"))) == 2
    assert cli("subscribers", "export", "--format", "xml").exit_code == 2


def test_forget_and_export_data(cli, folder):
    cli("subscribers", "add", "anna@example.org", "--name", "Anna Nowak", "--tag", "ngo")
    data = json.loads(cli("subscribers", "export-data", "anna@example.org").output)
    assert data["subscriber"]["name"] == "Anna Nowak" and data["consents"] == []
    aborted = cli("subscribers", "forget", "anna@example.org", input="n\n")
    assert aborted.exit_code == 1 and "Aborted" in aborted.output
    result = cli("subscribers", "forget", "anna@example.org", input="y\n")
    assert result.exit_code == 0
    assert "erased anna@example.org" in result.output and "name 'Anna Nowak'" in result.output
    assert "keyed hash" in result.output
    after = json.loads(cli("subscribers", "export-data", "anna@example.org", "--output",
                           str(folder / "anna.json")).output.split("\n", 1)[1] or "null")
    assert after is None
    written = json.loads((folder / "anna.json").read_text(encoding="utf-8"))
    assert written["subscriber"] is None and written["suppression"]["reason"] == "erased"
    path = folder / "back.csv"
    path.write_text("email\nanna@example.org\n", encoding="utf-8")
    assert "1 suppressed" in cli("subscribers", "import", str(path)).output


def test_db_upgrade(cli, folder):
    first = cli("db", "upgrade")
    assert first.exit_code == 0 and "upgraded from revision none to" in first.output
    second = cli("db", "upgrade")
    assert second.exit_code == 0 and "is up to date" in second.output


def test_every_command_upgrades_an_empty_database(cli, folder, db_url):
    assert cli("subscribers", "list").exit_code == 0
    assert (folder / "subscribers" / "newsletter.db").is_file()


@pytest.mark.parametrize("url", ["nonsense", "mysql+nodriver://x/y"])
def test_a_bad_database_url_is_a_config_error(cli, url):
    result = cli("subscribers", "list", env={"NEWSLETTER_DATABASE_URL": url})
    assert result.exit_code == 3 and "NEWSLETTER_DATABASE_URL" in result.output


def test_an_unreachable_database_exits_1(cli):
    result = cli("subscribers", "list", env={
        "NEWSLETTER_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    assert result.exit_code == 1 and "cannot open the database" in result.output


def test_usage_errors_exit_2(cli):
    assert cli("subscribers", "add").exit_code == 2
    assert cli("subscribers", "add", "a@example.org", "--attr", "novalue").exit_code == 2
    assert cli("subscribers", "import", "missing.csv").exit_code == 2
    assert cli("subscribers", "list", "--status", "asleep").exit_code == 2


def test_postgres_through_the_cli(cli, postgres_url, folder):
    env = {"NEWSLETTER_DATABASE_URL": postgres_url}
    assert cli("subscribers", "import", str(SAMPLE), "--rejects", str(folder / "r.csv"),
               env=env).exit_code == 0
    assert cli("subscribers", "export", env=env).output.count("\n") == 26
