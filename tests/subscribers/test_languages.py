"""Each subscriber's language: one canonical BCP 47 tag however it arrives (import, CLI, store),
kept by exports and re-imports, changed only when asked."""

import csv
import io
import json
import textwrap

import pytest

from newsletter.errors import InvalidValue, SubscriberNotFound
from newsletter.store import Status, Store
from newsletter.subscribers.exports import export_csv, export_json
from newsletter.subscribers.imports import ImportOptions, import_csv
from newsletter.values import LANGUAGE_LENGTH, clean_language


def write(tmp_path, body, name="list.csv"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body).lstrip("\n"), encoding="utf-8")
    return path


def rejects_of(report):
    with report.rejects_path.open(encoding="utf-8-sig", newline="") as file:
        return list(csv.reader(file))


def languages(store):
    return {s.email: s.language for s in store.subscribers()}


@pytest.mark.parametrize(("text", "tag"), [
    ("pt_br", "pt-BR"), ("PT-br", "pt-BR"), ("EN", "en"), ("el-gr", "el-GR"), (" bg ", "bg"),
    ("sr-latn-rs", "sr-Latn-RS"), ("ZH_HANT", "zh-Hant"), ("es-419", "es-419"),
    ("de-CH-1901", "de-CH-1901"), ("en-US-x-Twain", "en-US-x-twain"), ("zh-yue", "zh-yue"),
    ("tlh", "tlh"),  # no list of known languages: any well-formed tag
    ("", None), ("   ", None),
])
def test_tags_are_normalised(text, tag):
    assert clean_language(text) == tag
    assert tag is None or clean_language(tag) == tag  # canonical: cleaning again changes nothing


@pytest.mark.parametrize("text", ["english", "Deutsch", "e1", "e", "1en", "en-", "en--gb",
                                  "pt br", "en_US.UTF-8", "x-private", "i-klingon", "en-a",
                                  "fr-" + "a" * LANGUAGE_LENGTH])
def test_malformed_tags_are_refused(text):
    with pytest.raises(InvalidValue, match="language"):
        clean_language(text)


# ---------------------------------------------------------------- import


@pytest.mark.parametrize("title", ["language", "Lang", "LOCALE", "Language Code", "language-code"])
def test_a_language_column_under_any_of_its_names(store, tmp_path, title):
    path = write(tmp_path, f"""\
        email,name,{title}
        anna@example.org,Anna,pt_br
        eleni@example.org,Eleni,el-gr
        john@example.org,John,EN
        nobody@example.org,Nobody,
        """)
    report = import_csv(store, path)
    assert (report.added, report.rejected) == (4, 0)
    assert languages(store) == {"anna@example.org": "pt-BR", "eleni@example.org": "el-GR",
                                "john@example.org": "en", "nobody@example.org": None}
    assert all(s.attributes == {} for s in store.subscribers())  # a field, not an attribute


def test_a_column_mapped_to_language(store, tmp_path):
    path = write(tmp_path, "E-Mail;Sprache\nanna@example.org;DE-at\n")
    options = ImportOptions(columns={"E-Mail": "email", "Sprache": "language"})
    assert import_csv(store, path, options).added == 1
    assert store.get_by_email("anna@example.org").language == "de-AT"


def test_bad_languages_are_rejected_with_their_lines_and_the_rest_imports(store, tmp_path):
    long = "en-" + "-".join(["abcdefgh"] * 4)
    path = write(tmp_path, f"""\
        email,name,language,status
        anna@example.org,Anna,pl,
        jan@example.org,Jan,english,
        eva@example.org,Eva,e1,unsubscribed
        piet@example.org,Piet,{long},
        maria@example.org,Maria,IT,bounced
        """)
    report = import_csv(store, path)
    assert report.counts() == {"added": 2, "updated": 0, "unchanged": 0, "suppressed": 0,
                               "duplicates": 0, "rejected": 3}
    assert languages(store) == {"anna@example.org": "pl", "maria@example.org": "it"}
    assert store.get_by_email("maria@example.org").status is Status.BOUNCED
    rows = rejects_of(report)
    assert rows[0] == ["rejected_line", "rejected_reason", "email", "name", "language", "status"]
    by_line = {int(row[0]): row for row in rows[1:]}
    assert sorted(by_line) == [3, 4, 5]
    assert by_line[3][1] == ("'english' is not a language tag (expected a BCP 47 tag like "
                             "'en', 'bg' or 'pt-BR')")
    assert by_line[3][2:] == ["jan@example.org", "Jan", "english", ""]
    assert "'e1' is not a language tag" in by_line[4][1]
    assert f"longer than {LANGUAGE_LENGTH} characters" in by_line[5][1]
    assert str(report.shown[0]).startswith("line 3: 'english' is not a language tag")


def test_update_changes_the_language_and_an_empty_cell_keeps_it(store, tmp_path):
    anna = store.add("anna@example.org", name="Anna", language="el", status=Status.ACTIVE)
    store.add("jan@example.org", name="Jan", status=Status.ACTIVE)
    changed = write(tmp_path, "email,language\nanna@example.org,BG\njan@example.org,nl\n")
    assert import_csv(store, changed).unchanged == 2  # without --update: as they were
    assert languages(store) == {"anna@example.org": "el", "jan@example.org": None}
    report = import_csv(store, changed, ImportOptions(update=True))
    assert report.updated == 2
    assert languages(store) == {"anna@example.org": "bg", "jan@example.org": "nl"}
    assert import_csv(store, changed, ImportOptions(update=True)).unchanged == 2
    empty = write(tmp_path, "email,name,language\nanna@example.org,Anna Nowak,\n"
                            "jan@example.org,Jan,\n", name="empty.csv")
    report = import_csv(store, empty, ImportOptions(update=True))
    assert (report.updated, report.unchanged) == (1, 1)
    after = store.get(anna.id)
    assert (after.name, after.language, after.status) == ("Anna Nowak", "bg", Status.ACTIVE)
    assert store.get_by_email("jan@example.org").language == "nl"
    without = write(tmp_path, "email,name\nanna@example.org,Anna N\n", name="without.csv")
    assert import_csv(store, without, ImportOptions(update=True)).updated == 1
    assert store.get(anna.id).language == "bg"


def test_repeats_in_a_file_merge_their_language_under_update(store, tmp_path):
    store.add("kept@example.org", language="fr", status=Status.ACTIVE)
    path = write(tmp_path, """\
        email,language
        anna@example.org,el
        ANNA@example.org,
        kept@example.org,de
        Kept@example.org,it
        jan@example.org,
        JAN@example.org,pt-pt
        """)
    report = import_csv(store, path, ImportOptions(update=True))
    assert (report.added, report.updated, report.duplicates) == (2, 1, 3)
    assert languages(store) == {"kept@example.org": "it", "anna@example.org": "el",
                                "jan@example.org": "pt-PT"}


def test_without_update_the_first_row_wins(store, tmp_path):
    path = write(tmp_path, "email,language\nanna@example.org,el\nANNA@example.org,bg\n")
    report = import_csv(store, path)
    assert (report.added, report.duplicates) == (1, 1)
    assert languages(store) == {"anna@example.org": "el"}


def test_a_resubscribe_keeps_the_language_unless_the_row_gives_one(store, tmp_path):
    anna = store.add("anna@example.org", language="el", status=Status.ACTIVE)
    store.set_status(anna.id, Status.UNSUBSCRIBED, reason="test")
    path = write(tmp_path, "email,language\nanna@example.org,\n")
    assert import_csv(store, path, ImportOptions(resubscribe=True)).updated == 1
    assert (store.get(anna.id).status, store.get(anna.id).language) == (Status.ACTIVE, "el")


def test_a_large_file_read_by_a_child_process_keeps_languages(store, tmp_path):
    lines = "".join(f"p{n}@example.org,{['EL', 'pt_br', '', 'xx-yyyyyyyyy'][n % 4]}\n"
                    for n in range(400))
    path = write(tmp_path, "email,lang\n" + lines)
    report = import_csv(store, path, ImportOptions(batch_size=50), parallel=True)
    assert (report.added, report.rejected) == (300, 100)
    found = languages(store)
    assert found["p0@example.org"] == "el" and found["p1@example.org"] == "pt-BR"
    assert found["p2@example.org"] is None and "p3@example.org" not in found
    assert rejects_of(report)[1][:2] == ["5", "'xx-yyyyyyyyy' is not a language tag (expected "
                                              "a BCP 47 tag like 'en', 'bg' or 'pt-BR')"]


# ---------------------------------------------------------------- export, store


def test_export_then_import_keeps_every_language(store, tmp_path):
    store.add("anna@example.org", name="Anna", language="pt_BR", status=Status.ACTIVE,
              attributes={"org": "CESIE"})
    store.add("jan@example.org", name="Jan", status=Status.ACTIVE)
    store.add("eleni@example.org", language="EL", tags=["police"])
    out = io.StringIO()
    assert export_csv(store, out) == 3
    exported = out.getvalue()
    assert exported.splitlines()[0] == "email,name,status,tags,language,org"
    (tmp_path / "export.csv").write_text(exported, encoding="utf-8")
    with Store.open(f"sqlite:///{tmp_path / 'copy.db'}") as copy:
        report = import_csv(copy, tmp_path / "export.csv")
        assert (report.added, report.rejected) == (3, 0)
        assert languages(copy) == languages(store) == {
            "anna@example.org": "pt-BR", "jan@example.org": None, "eleni@example.org": "el"}
        again = io.StringIO()
        export_csv(copy, again)
        assert again.getvalue() == exported
    assert import_csv(store, tmp_path / "export.csv", ImportOptions(update=True)).unchanged == 3
    as_json = io.StringIO()
    export_json(store, as_json)
    assert [r["language"] for r in json.loads(as_json.getvalue())] == ["pt-BR", None, "el"]


def test_add_and_set_the_language(store):
    anna = store.add("anna@example.org", language="el_gr")
    assert store.get(anna.id).language == "el-GR"
    assert store.add("jan@example.org", language="").language is None
    with pytest.raises(InvalidValue, match="'greek' is not a language tag"):
        store.add("eva@example.org", language="greek")
    assert store.get_by_email("eva@example.org") is None
    before = store.get(anna.id).updated_at
    assert store.set_language(anna.id, "BG").language == "bg"
    after = store.get(anna.id)
    assert after.language == "bg" and after.updated_at > before
    with pytest.raises(InvalidValue):
        store.set_language(anna.id, "bulgarian")
    assert store.get(anna.id).language == "bg"
    assert store.set_language(anna.id, None).language is None
    assert store.get(anna.id).language is None
    with pytest.raises(SubscriberNotFound):
        store.set_language(anna.id + 100, "en")


def test_rejoining_keeps_the_language_unless_given(store):
    anna = store.add("anna@example.org", language="el", status=Status.ACTIVE)
    store.set_status(anna.id, Status.UNSUBSCRIBED, reason="test")
    store.add("anna@example.org", status=Status.ACTIVE, resubscribe=True)
    assert store.get(anna.id).language == "el"
    store.set_status(anna.id, Status.UNSUBSCRIBED, reason="test")
    store.add("anna@example.org", status=Status.ACTIVE, resubscribe=True, language="it")
    assert store.get(anna.id).language == "it"


def test_filter_by_language_takes_regional_forms_too(store):
    for email, language in [("a@example.org", "pt"), ("b@example.org", "pt-BR"),
                            ("c@example.org", "pt-PT"), ("d@example.org", "pta"),
                            ("e@example.org", None), ("f@example.org", "el")]:
        store.add(email, language=language)

    def who(*wanted):
        return [s.email[0] for s in store.subscribers(languages=wanted)]

    assert who("pt") == ["a", "b", "c"] and store.count(languages=["PT"]) == 3
    assert who("pt_br") == ["b"] and who("pt-BR", "el") == ["b", "f"]
    assert who() == ["a", "b", "c", "d", "e", "f"] and who("de") == []


# ---------------------------------------------------------------- the CLI


def test_add_show_list_export_data_with_a_language(cli, folder):
    result = cli("subscribers", "add", "anna@example.org", "--language", "PT_br", "--confirmed")
    assert result.exit_code == 0, result.output
    assert cli("subscribers", "add", "jan@example.org").exit_code == 0
    assert "language:       pt-BR" in cli("subscribers", "show", "anna@example.org").output
    assert "language:       – (not known" in cli("subscribers", "show", "jan@example.org").output
    listed = cli("subscribers", "list", "--language", "pt")
    assert "anna@example.org" in listed.output and "pt-BR" in listed.output
    assert "jan@example.org" not in listed.output and "1 of 1 subscribers" in listed.output
    data = json.loads(cli("subscribers", "export-data", "anna@example.org").output)
    assert data["subscriber"]["language"] == "pt-BR"
    exported = cli("subscribers", "export").output.splitlines()
    assert exported[:2] == ["email,name,status,tags,language", "anna@example.org,,active,,pt-BR"]


def test_a_bad_language_is_a_usage_error(cli):
    result = cli("subscribers", "add", "anna@example.org", "--language", "english")
    assert result.exit_code == 2 and "'english' is not a language tag" in result.output
    assert cli("subscribers", "list", "--language", "e1").exit_code == 2
    assert "0 of 0" in cli("subscribers", "list").output


def test_import_with_bad_languages_exits_1_and_says_where(cli, folder):
    path = folder / "people.csv"
    path.write_text("email,locale\nanna@example.org,el\njan@example.org,greek\n",
                    encoding="utf-8")
    result = cli("subscribers", "import", str(path))
    assert result.exit_code == 1
    assert "people.csv: line 3: 'greek' is not a language tag" in result.output
    assert "2 rows: 1 added, 0 updated, 0 unchanged, 0 suppressed, 0 duplicates, 1 rejected" \
        in result.output
