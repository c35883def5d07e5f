"""CSV import: every bad file gives its documented result, loses nothing, writes no half rows."""

import csv
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from newsletter.errors import ImportFileError
from newsletter.store import Status, Store
from newsletter.subscribers.exports import export_csv
from newsletter.subscribers.imports import ImportOptions, import_csv


def write(tmp_path, body, name="list.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(textwrap.dedent(body).lstrip("\n").encode(encoding))
    return path


def rejects_of(report):
    with report.rejects_path.open(encoding="utf-8-sig", newline="") as file:
        return list(csv.reader(file))


def emails(store):
    return [s.email for s in store.subscribers()]


def test_a_clean_file_imports_with_attributes_and_tags(store, tmp_path):
    path = write(tmp_path, """\
        email,name,Organisation,Country,Tags,first_name
        anna.nowak@example.org,Anna Nowak,KWP Kraków,PL,police;training,
        "jan@example.org","Vries, Jan de",Europol,NL,"Police, EU",Jan
        """)
    report = import_csv(store, path)
    assert report.counts() == {"added": 2, "updated": 0, "unchanged": 0, "suppressed": 0,
                               "duplicates": 0, "rejected": 0}
    assert report.rejects_path is None and not (tmp_path / "list.rejects.csv").exists()
    anna, jan = store.subscribers()
    assert (anna.status, anna.source) == (Status.ACTIVE, "import:list.csv")
    assert anna.attributes == {"country": "PL", "organisation": "KWP Kraków"}
    assert anna.tags == ["police", "training"] and jan.tags == ["eu", "police"]
    assert jan.name == "Vries, Jan de" and jan.first_name == "Jan"


def test_utf8_with_bom_semicolons_and_a_header_map(store, tmp_path):
    path = write(tmp_path, """\
        E-Mail Adresse;Vollständiger Name;Notiz
        jürgen@münchen.de;Jürgen Müller;ignored
        """, encoding="utf-8-sig")
    options = ImportOptions(columns={"E-Mail Adresse": "email", "Vollständiger Name": "name",
                                     "Notiz": "-"}, tags=("import-2025",))
    assert import_csv(store, path, options).added == 1
    (jurgen,) = store.subscribers()
    assert (jurgen.email, jurgen.name) == ("jürgen@münchen.de", "Jürgen Müller")
    assert jurgen.attributes == {} and jurgen.tags == ["import-2025"]


def test_a_file_in_the_wrong_encoding_is_refused_whole(store, tmp_path):
    path = write(tmp_path, "email,name\nanna@example.org,Anna\njose@example.org,José\n",
                 encoding="cp1252")
    with pytest.raises(ImportFileError, match=r"line 3: not valid utf-8-sig .*--encoding"):
        import_csv(store, path)
    assert store.count() == 0
    assert import_csv(store, path, ImportOptions(encoding="cp1252")).added == 2
    assert store.get_by_email("jose@example.org").name == "José"


def test_a_utf16_file_is_recognised(store, tmp_path):
    path = write(tmp_path, "email\tname\nanna@example.org\tAnna\n", encoding="utf-16")
    with pytest.raises(ImportFileError, match="--encoding utf-16"):
        import_csv(store, path)
    assert import_csv(store, path, ImportOptions(encoding="utf-16")).added == 1


@pytest.mark.parametrize(("body", "message"), [
    ("", "is empty"),
    ("\n\n", "is empty"),
    ("name,organisation\nAnna,CESIE\n", "no email column"),
    ("email,mail\na@example.org,b@example.org\n", "both give 'email'"),
    (",".join(f"c{n}" for n in range(10_000)) + "\n", "10,000 columns"),
])
def test_files_that_cannot_be_imported_at_all(store, tmp_path, body, message):
    with pytest.raises(ImportFileError, match=message):
        import_csv(store, write(tmp_path, body))
    assert store.count() == 0


def test_bad_rows_are_reported_set_aside_and_the_rest_imports(store, tmp_path):
    junk = ",".join(["x@example.org", *["junk"] * 10_000])
    path = write(tmp_path, f"""\
        email,name,status
        anna@example.org,Anna,

        not-an-address,Nobody,
        ,No Address,
        ,,
        jan@example.org,{"J" * 201},
        maria@example.org,Maria,sleeping
        {junk}
        "eva@example.org","Eva ""Evi"" Horváth",subscribed
        "piet@example.org","Piet
        Jansen",
        """)
    report = import_csv(store, path)
    assert report.counts() == {"added": 3, "updated": 0, "unchanged": 0, "suppressed": 0,
                               "duplicates": 0, "rejected": 5}
    assert sorted(emails(store)) == ["anna@example.org", "eva@example.org", "piet@example.org"]
    assert store.get_by_email("eva@example.org").name == 'Eva "Evi" Horváth'
    assert store.get_by_email("piet@example.org").name == "Piet Jansen"
    rows = rejects_of(report)
    assert rows[0] == ["rejected_line", "rejected_reason", "email", "name", "status"]
    by_line = {int(row[0]): row for row in rows[1:]}
    assert sorted(by_line) == [4, 5, 7, 8, 9]
    assert "must have an @-sign" in by_line[4][1] and by_line[4][2:] == ["not-an-address",
                                                                           "Nobody", ""]
    assert by_line[5][1] == "no email address"
    assert "longer than 200" in by_line[7][1]
    assert "unknown status 'sleeping'" in by_line[8][1]
    assert "10,001 fields, the header 3" in by_line[9][1] and len(by_line[9]) == 10_003
    assert str(report.shown[0]).startswith("line 4: invalid email address")


def test_broken_quotes_are_reported_with_their_lines(store, tmp_path):
    path = write(tmp_path, """\
        email,name
        anna@example.org,"Anna" Nowak
        jan@example.org,"Jan
        eva@example.org,Eva
        """)
    report = import_csv(store, path)
    assert report.rejected == 2 and report.added == 0
    reasons = [row[1] for row in rejects_of(report)[1:]]
    assert reasons[0].startswith("unreadable CSV") and "lines 3–4" in reasons[1]


def test_a_fixed_rejects_file_imports_as_it_is(store, tmp_path):
    report = import_csv(store, write(tmp_path, "email,name\nanna@example,Anna\n"))
    fixed = report.rejects_path.read_text(encoding="utf-8-sig").replace("anna@example,",
                                                                        "anna@example.org,")
    (tmp_path / "fixed.csv").write_text(fixed, encoding="utf-8")
    again = import_csv(store, tmp_path / "fixed.csv")
    assert again.added == 1 and store.get_by_email("anna@example.org").attributes == {}


def test_duplicates_in_the_file_first_row_wins_unless_update(store, tmp_path):
    body = """\
        email,name,org
        anna@example.org,Anna,CESIE
        jan@example.org,Jan,
        ANNA@example.org,Anna Nowak,KEMEA
        """
    report = import_csv(store, write(tmp_path, body))
    assert (report.added, report.duplicates, report.rejected) == (2, 1, 0)
    assert store.get_by_email("anna@example.org").name == "Anna"
    (row,) = rejects_of(report)[1:]
    assert row[:3] == ["4", "repeats an address earlier in the file (line 2)", "ANNA@example.org"]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with Store.open(f"sqlite:///{fresh / 'db.sqlite'}") as other:
        report = import_csv(other, write(fresh, body), ImportOptions(update=True))
        assert (report.added, report.duplicates) == (2, 1) and report.rejects_path is None
        anna = other.get_by_email("anna@example.org")
        assert (anna.name, anna.attributes) == ("Anna Nowak", {"org": "KEMEA"})


def test_duplicates_across_batches_are_found_too(store, tmp_path):
    rows = [f"p{n}@example.org,P{n}" for n in range(10)] + ["P3@example.org,again"]
    path = write(tmp_path, "email,name\n" + "\n".join(rows) + "\n")
    report = import_csv(store, path, ImportOptions(batch_size=4))
    assert (report.added, report.duplicates) == (10, 1)
    assert rejects_of(report)[1][1] == "repeats an address earlier in the file"


def test_addresses_already_on_the_list_change_only_with_update(store, tmp_path):
    store.add("anna@example.org", name="Anna", attributes={"org": "CESIE", "country": "IT"},
              tags=["ngo"], status=Status.PENDING)
    path = write(tmp_path, "email,name,org,tags\nanna@example.org,Anna Rossi,KEMEA,police\n")
    assert import_csv(store, path).unchanged == 1
    assert store.get_by_email("anna@example.org").name == "Anna"
    assert import_csv(store, path, ImportOptions(update=True)).updated == 1
    anna = store.get_by_email("anna@example.org")
    assert anna.name == "Anna Rossi" and anna.status is Status.PENDING
    assert anna.attributes == {"country": "IT", "org": "KEMEA"} and anna.tags == ["ngo", "police"]
    assert import_csv(store, path, ImportOptions(update=True)).unchanged == 1


def test_an_update_writes_only_what_changed(store, tmp_path):
    """New fields keep the status history; a new status keeps the fields."""
    anna = store.add("anna@example.org", name="Anna", attributes={"org": "CESIE"},
                     status=Status.ACTIVE)
    before = store.get_by_email("anna@example.org")
    renamed = write(tmp_path, "email,name\nanna@example.org,Anna Rossi\n")
    assert import_csv(store, renamed, ImportOptions(update=True)).updated == 1
    after = store.get_by_email("anna@example.org")
    assert after.name == "Anna Rossi" and after.attributes == {"org": "CESIE"}
    assert (after.status, after.status_reason, after.status_changed_at) == (
        before.status, before.status_reason, before.status_changed_at)
    left = write(tmp_path, "email,status\nanna@example.org,unsubscribed\n")
    assert import_csv(store, left).updated == 1
    gone = store.get(anna.id)
    assert gone.status is Status.UNSUBSCRIBED and gone.status_reason == "import"
    assert gone.unsubscribed_at is not None and gone.status_changed_at > before.status_changed_at
    assert (gone.name, gone.attributes) == ("Anna Rossi", {"org": "CESIE"})


@pytest.mark.parametrize("left", ["unsubscribed", "bounced", "complained", "erased"])
def test_who_left_or_was_erased_stays_out_and_counts_as_suppressed(store, tmp_path, left):
    anna = store.add("anna@example.org", name="Anna", status=Status.ACTIVE)
    if left == "erased":
        store.forget("anna@example.org")
    else:
        store.set_status(anna.id, Status(left), reason="test")
    path = write(tmp_path, "email,name,status\nANNA@example.org,Anna N,active\n")
    for options in (ImportOptions(), ImportOptions(update=True)):
        report = import_csv(store, path, options)
        assert report.suppressed == 1 and report.added == report.updated == 0
    if left != "erased":
        assert store.get_by_email("anna@example.org").status is Status(left)
    else:
        assert store.get_by_email("anna@example.org") is None
    report = import_csv(store, path, ImportOptions(resubscribe=True))
    assert report.added + report.updated == 1
    assert store.get_by_email("anna@example.org").status is Status.ACTIVE


def test_an_unsubscribe_in_the_file_is_always_honoured(store, tmp_path):
    store.add("anna@example.org", status=Status.ACTIVE)
    path = write(tmp_path, "email,status\nanna@example.org,unsubscribed\nnew@example.org,"
                           "bounced\n")
    report = import_csv(store, path)
    assert (report.updated, report.added) == (1, 1)
    assert store.get_by_email("anna@example.org").status is Status.UNSUBSCRIBED
    assert store.get_by_email("new@example.org").status is Status.BOUNCED
    assert store.is_suppressed("new@example.org")


def test_import_as_pending(store, tmp_path):
    path = write(tmp_path, "email\nanna@example.org\n")
    import_csv(store, path, ImportOptions(status=Status.PENDING))
    assert store.get_by_email("anna@example.org").status is Status.PENDING


def test_progress_is_reported_in_bytes(store, tmp_path):
    path = write(tmp_path, "email\n" + "".join(f"p{n}@example.org\n" for n in range(50)))
    seen = []
    import_csv(store, path, ImportOptions(batch_size=10), progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == path.stat().st_size


CRASH = """
import sys
from pathlib import Path
from newsletter.subscribers.imports import ImportOptions, import_csv
from newsletter.store import Store
with Store.open(sys.argv[1]) as store:
    import_csv(store, Path(sys.argv[2]), ImportOptions(batch_size=500))
"""


def test_a_crash_mid_import_leaves_only_whole_batches(database_url, tmp_path):
    rows = "".join(f"person{n}@example.org,Person {n},Org {n}\n" for n in range(200_000))
    path = write(tmp_path, "email,name,org\n" + rows)
    with Store.open(database_url) as store:  # create the schema before the race
        process = subprocess.Popen([sys.executable, "-c", CRASH, database_url, str(path)],
                                   env={**os.environ, "PYTHONPATH": os.getcwd()})
        try:
            deadline = time.monotonic() + 60
            while store.count() < 1000 and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        count = settled_count(store)
        assert 0 < count < 200_000 and count % 500 == 0
        last = store.get_by_email(f"person{count - 1}@example.org")
        assert last.name == f"Person {count - 1}" and last.attributes == {"org": f"Org {count - 1}"}
        assert store.get_by_email(f"person{count}@example.org") is None


def settled_count(store: Store) -> int:
    """The row count once the killed client's last COMMIT, if it had sent one, has landed:
    PostgreSQL finishes a transaction whose COMMIT arrived even when the client is gone."""
    counts = [store.count()]
    while len(counts) < 3 or len(set(counts[-3:])) > 1:
        time.sleep(0.1)
        counts.append(store.count())
    return counts[-1]


# ---------------------------------------------------------------- reading in a child process

MIXED = """\
    email,name,organisation,tags,status
    anna@example.org,Anna Nowak,CESIE,police;training,
    not-an-address,Nobody,,,
    jan@example.org,Jan,,,unsubscribed
    ANNA@example.org,Anna N.,KEMEA,justice,
    kept@example.org,Kept Already,,,
    gone@example.org,Erased Before,,,
    "broken@example.org,"Quote
    jürgen@münchen.de,Jürgen Müller,Polizei,,subscribed
    eva@example.org,Eva,,ngo,pending
    jan@example.org,Jan again,,,active
    """


def import_both_ways(store, tmp_path, options):
    """The same file imported by this process and by a child reader: (report, rejects, data)."""
    results = []
    for parallel in (False, True):
        folder = tmp_path / f"parallel-{parallel}"
        folder.mkdir()
        body = textwrap.dedent(MIXED) + "".join(f"p{n}@example.org,P {n},,,\n" for n in range(40))
        path = write(folder, body)
        with Store.open(f"sqlite:///{folder / 'db.sqlite'}") if not parallel else store as target:
            target.add("kept@example.org", name="Kept", status=Status.ACTIVE)
            target.add("gone@example.org")
            target.forget("gone@example.org")
            report = import_csv(target, path, options, parallel=parallel)
            out = io.StringIO()
            export_csv(target, out)
        results.append((report.counts(), rejects_of(report) if report.rejects_path else [],
                        out.getvalue()))
    return results


@pytest.mark.parametrize("options", [ImportOptions(batch_size=7),
                                     ImportOptions(batch_size=7, update=True),
                                     ImportOptions(batch_size=1000, resubscribe=True)],
                         ids=["default", "update", "resubscribe"])
def test_a_child_process_reads_exactly_what_this_one_reads(store, tmp_path, options):
    here, child = import_both_ways(store, tmp_path, options)
    assert child == here
    counts, rejects, exported = here
    assert counts["rejected"] == 2 and counts["added"] >= 44  # the file's cases all met
    assert "repeats an address" in str(rejects) or options.update
    assert "Jürgen Müller" in exported
    assert ("Erased Before" in exported) == options.resubscribe


def children_reading():
    """Our child processes that read an import file (Linux's /proc), by pid."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        child = b"newsletter.subscribers.importfile"
        if f"\nPPid:\t{os.getpid()}\n" in status and child in command:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_no_child_outlives_an_import_that_stops(store, tmp_path):
    path = write(tmp_path, "email\n" + "".join(f"p{n}@example.org\n" for n in range(30_000)))

    def stop(_position):
        assert children_reading(), "the file is read by a child process"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_csv(store, path, ImportOptions(batch_size=1000), progress=stop, parallel=True)
    assert children_reading() == []
    assert 0 < store.count() <= 5_000  # whole batches only: the first
    bad = write(tmp_path, "email,name\nanna@example.org,José\n", name="bad.csv",
                encoding="cp1252")
    with pytest.raises(ImportFileError, match="line 2: not valid utf-8"):
        import_csv(store, bad, parallel=True)
    assert children_reading() == [] and store.get_by_email("anna@example.org") is None
