"""Export → import into a fresh database → export is the identity (CSV), and JSON has it all."""

import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.store import Status, Store
from newsletter.subscribers.exports import export_csv, export_json
from newsletter.subscribers.imports import import_csv
from newsletter.values import attribute_name, clean_name, clean_tags

TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)
ATTRIBUTE_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True).filter(
    lambda n: n not in {"email", "name", "tags", "status", "tag", "mail", "e_mail",
                        "full_name", "fullname", "display_name", "emailaddress",
                        "email_address", "e_mail_address", "language", "lang", "locale",
                        "language_code"} and attribute_name(n) == n)
# Well-formed tags in any case and with either separator; None: not known.
LANGUAGES = st.one_of(st.none(), st.from_regex(
    r"[a-zA-Z]{2,3}([-_][a-zA-Z]{4})?([-_]([a-zA-Z]{2}|[0-9]{3}))?", fullmatch=True))
PEOPLE = st.lists(
    st.fixed_dictionaries({
        "email": st.emails(),
        "name": TEXT.map(clean_name),
        "status": st.sampled_from(list(Status)),
        "language": LANGUAGES,
        "tags": st.lists(TEXT.filter(lambda t: 0 < len(t.strip()) <= 60), max_size=3),
        "attributes": st.dictionaries(ATTRIBUTE_NAMES, TEXT.map(str.strip), max_size=3),
    }),
    max_size=12, unique_by=lambda person: person["email"].lower())


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """An empty, migrated database file to copy: migrating per example would be slow."""
    path = tmp_path_factory.mktemp("template") / "empty.db"
    Store.open(f"sqlite:///{path}").close()
    return path


def fresh(template: Path, folder: Path, name: str) -> Store:
    shutil.copy(template, folder / name)
    return Store.open(f"sqlite:///{folder / name}")


def csv_of(store: Store) -> str:
    out = io.StringIO()
    export_csv(store, out)
    return out.getvalue()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(people=PEOPLE)
def test_export_import_export_is_the_identity(template, people):
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        with fresh(template, folder, "first.db") as first:
            for person in people:
                try:
                    first.add(person["email"], name=person["name"],
                              attributes=person["attributes"], tags=clean_tags(person["tags"]),
                              status=person["status"], language=person["language"])
                except ValueError:
                    continue  # an address email-validator refuses: not part of the list
            exported = csv_of(first)
        (folder / "export.csv").write_text(exported, encoding="utf-8")
        with fresh(template, folder, "second.db") as second:
            report = import_csv(second, folder / "export.csv")
            assert report.rejected == report.duplicates == 0
            assert csv_of(second) == exported


def test_json_export_has_every_field(store):
    store.add("anna@example.org", name="Anna", attributes={"org": "CESIE"}, tags=["ngo"],
              status=Status.ACTIVE, language="el_gr")
    store.add("jan@example.org")
    out = io.StringIO()
    assert export_json(store, out, statuses=[Status.ACTIVE]) == 1
    (record,) = json.loads(out.getvalue())
    assert record["email"] == "anna@example.org" and record["attributes"] == {"org": "CESIE"}
    assert record["tags"] == ["ngo"] and record["status"] == "active"
    assert record["language"] == "el-GR"
    assert record["created_at"].endswith("+00:00") and "email_key" not in record
    empty = io.StringIO()
    assert export_json(store, empty, tags=["nobody"]) == 0 and json.loads(empty.getvalue()) == []


def test_csv_export_is_the_import_format(store):
    store.add("anna@example.org", name="Nowak, Anna", attributes={"org": "KWP Kraków"},
              tags=["police", "training"], status=Status.ACTIVE, language="PL")
    store.add("jan@example.org", attributes={"country": "NL"})
    assert csv_of(store).splitlines() == [
        "email,name,status,tags,language,country,org",
        'anna@example.org,"Nowak, Anna",active,police;training,pl,,KWP Kraków',
        "jan@example.org,,pending,,,NL,",
    ]
    only = io.StringIO()
    export_csv(store, only, tags=["police"])
    assert only.getvalue().splitlines()[1:] == [
        'anna@example.org,"Nowak, Anna",active,police;training,pl,KWP Kraków']
