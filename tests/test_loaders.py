"""Loaders: every format parsed into titled sections, and every bad input refused with its reason."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from ingest.documents import LoadError
from ingest.loaders import MAX_LINE_CHARS, Limits, RecordFields, load_path
from tests.fixtures.ingest_files import make_docx, make_pdf


def load(tmp_path: Path, name: str, data: bytes | str, fields: RecordFields = RecordFields()):
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return load_path(path, name, fields)


def sections(document) -> list[tuple[tuple[str, ...], str]]:
    return [(s.headings, s.text) for s in document.sections]


def test_markdown_keeps_heading_path_and_ignores_headings_in_code(tmp_path):
    text = "# Guide\n\nIntro.\n\n## Install\n\n### Linux\n\nUse apt.\n\n```\n# not a heading\n```\n\n## Use\n\nRun it.\n"
    [doc], problems = load(tmp_path, "guide.md", text)
    assert problems == []
    assert doc.title == "Guide"
    assert sections(doc) == [
        ((), "Intro."),
        (("Install", "Linux"), "Use apt.\n\n```\n# not a heading\n```"),
        (("Use",), "Run it."),
    ]


def test_markdown_front_matter_gives_the_title_and_is_not_text(tmp_path):
    [doc], _ = load(tmp_path, "a.md", "---\ntitle: \"Release notes\"\ndate: 2024\n---\n\nNew things.\n")
    assert doc.title == "Release notes"
    assert sections(doc) == [((), "New things.")]


def test_text_file_title_is_its_name(tmp_path):
    [doc], _ = load(tmp_path, "notes.txt", "  line one\nline two  \n")
    assert (doc.doc_id, doc.title, sections(doc)) == ("notes.txt", "notes", [((), "line one\nline two")])


def test_html_keeps_main_text_without_scripts_styles_or_navigation(tmp_path):
    page = """<html><head><title>Birds | Site</title><style>p{color:red}</style><script>var tracking = 1;</script></head>
    <body><header>Site banner</header><nav><a href="/">Home</a> Menu</nav>
    <main><h1>Herons</h1><p>Herons eat <b>fish</b> and frogs.</p><!-- a comment -->
    <h2>Nests</h2><ul><li>High in trees</li><li>Near water</li></ul>
    <table><tr><th>Bird</th><th>Size</th></tr><tr><td>Heron</td><td>1 m</td></tr></table>
    <aside>Related links</aside></main><footer>Copyright</footer></body></html>"""
    [doc], _ = load(tmp_path, "birds.html", page)
    assert doc.title == "Herons"
    assert sections(doc) == [
        ((), "Herons eat fish and frogs."),
        (("Nests",), "High in trees\n\nNear water"),
        (("Nests",), "Bird | Size\nHeron | 1 m"),
    ]
    assert doc.sections[2].header == "Bird | Size"


def test_html_without_main_drops_page_header_and_footer_and_uses_the_title_tag(tmp_path):
    page = "<html><head><title>Plain page</title></head><body><header>Top</header><div>Body text here.</div><footer>Bottom</footer></body></html>"
    [doc], _ = load(tmp_path, "plain.htm", page)
    assert (doc.title, sections(doc)) == ("Plain page", [((), "Body text here.")])


def test_pdf_gives_one_section_per_page_with_its_number(tmp_path):
    data = make_pdf(["Otters live in rivers.", "", "Beavers build dams."], title="River animals")
    [doc], _ = load(tmp_path, "rivers.pdf", data)
    assert doc.title == "River animals"
    assert [(s.metadata, s.text) for s in doc.sections] == [
        ({"page": 1}, "Otters live in rivers."),
        ({"page": 3}, "Beavers build dams."),
    ]


def test_docx_splits_at_heading_styles_and_reads_tables(tmp_path):
    data = make_docx(
        [("Title", "Annual report"), ("Normal", "Summary first."), ("Heading 1", "Budget"),
         ("Normal", "Kayaks cost most."), ("table", "item|cost/kayak|300"), ("Heading 2", "Travel"), ("Normal", "By train.")]
    )
    [doc], _ = load(tmp_path, "report.docx", data)
    assert doc.title == "Annual report"
    assert sections(doc) == [
        ((), "Summary first."),
        (("Budget",), "Kayaks cost most."),
        (("Budget",), "item | cost\nkayak | 300"),
        (("Budget", "Travel"), "By train."),
    ]
    assert [s.header for s in doc.sections] == ["", "", "item | cost", ""]


def test_csv_rows_carry_the_header_and_their_line_numbers(tmp_path):
    rows = "\n".join(f"P{i};Widget number {i} with a longer description;{i * 10}" for i in range(1, 31))
    [doc], _ = load(tmp_path, "parts.csv", "code;description;price\n" + rows + "\n")
    first = doc.sections[0]
    assert first.text.splitlines()[0] == "code: P1; description: Widget number 1 with a longer description; price: 10"
    assert first.metadata["rows"].startswith("2-")
    assert len(doc.sections) > 1
    assert all(line.startswith("code: ") for s in doc.sections for line in s.text.splitlines())
    assert doc.sections[-1].metadata["rows"].endswith("-31")


def test_tsv_uses_tabs(tmp_path):
    [doc], _ = load(tmp_path, "t.tsv", "name\tcity\nAnn\tOslo, Norway\n")
    assert sections(doc) == [((), "name: Ann; city: Oslo, Norway")]


def test_json_records_keep_scalar_fields_as_metadata(tmp_path):
    records = [{"id": 7, "question": "How?", "text": "Like this.", "course": "ml", "year": 2024, "tags": ["x"], "score": float("nan")}]
    docs, problems = load(tmp_path, "faq.json", json.dumps(records), RecordFields(title_field="question"))
    assert problems == []
    assert [(d.doc_id, d.title, d.metadata, sections(d)) for d in docs] == [("7", "How?", {"course": "ml", "year": 2024}, [((), "Like this.")])]


def test_jsonl_bad_lines_and_records_are_reported_and_the_rest_loaded(tmp_path):
    text = '{"id": "a", "text": "alpha"}\nnot json\n{"id": "b"}\n[1, 2]\n{"id": "a", "text": "again"}\n{"id": "c", "text": "gamma"}\n'
    docs, problems = load(tmp_path, "r.jsonl", text)
    assert [(d.doc_id, [s.text for s in d.sections]) for d in docs] == [("a", ["alpha", "again"]), ("c", ["gamma"])]
    assert [(p.where, p.skipped) for p in problems] == [("line 2", True), ("line 3", True), ("line 4", True), ("line 5", False)]
    assert "malformed JSON" in problems[0].reason
    assert problems[1].reason == "no text in field 'text' (choose it with --text-field)"
    assert problems[2].reason == "not a JSON object but list"
    assert problems[3].reason == "duplicate id 'a' (first at line 1): its text was added to that document"


DEEPLY_NESTED = "[" * 100_000
TOO_MANY_DIGITS = "9" * 5_000


def test_a_jsonl_line_nested_too_deeply_or_holding_a_too_long_number_is_skipped_alone(tmp_path):
    text = "\n".join([
        '{"id": "a", "text": "Otters hold hands."}',
        DEEPLY_NESTED,
        '{"id": "b", "text": "Herons fish.", "n": ' + TOO_MANY_DIGITS + "}",
        '{"id": "c", "text": "Moles dig."}',
    ]) + "\n"

    docs, problems = load(tmp_path, "r.jsonl", text)

    assert [(d.doc_id, d.sections[0].text) for d in docs] == [("a", "Otters hold hands."), ("c", "Moles dig.")]
    assert [(p.where, p.reason, p.skipped) for p in problems] == [
        ("line 2", "JSON nested too deeply to read", True),
        ("line 3", "a number of more than 4,300 digits, too long to read", True),
    ]


def test_a_json_file_holding_a_too_long_number_is_refused_with_the_reason(tmp_path):
    with pytest.raises(LoadError) as caught:
        load(tmp_path, "r.json", '[{"id": "a", "text": "Otters.", "n": ' + TOO_MANY_DIGITS + "}]")

    assert str(caught.value) == "a number of more than 4,300 digits, too long to read"


def test_malformed_json_file_is_refused_with_position(tmp_path):
    with pytest.raises(LoadError, match=r"malformed JSON at line 2 column \d+"):
        load(tmp_path, "bad.json", '[{"id": 1,\n "text": }]')


def test_non_utf8_text_is_decoded_with_a_warning(tmp_path):
    [doc], problems = load(tmp_path, "menu.txt", "Café crème brûlée".encode("cp1252"))
    assert sections(doc) == [((), "Café crème brûlée")]
    assert [(p.skipped, p.reason) for p in problems] == [(False, "not UTF-8 (byte 3); decoded as cp1252")]


def test_utf16_with_bom_is_decoded(tmp_path):
    [doc], problems = load(tmp_path, "wide.txt", "Grüße aus Köln".encode("utf-16"))
    assert (sections(doc), problems) == ([((), "Grüße aus Köln")], [])


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("photo.bmp", b"BM....", "unsupported file type .bmp"),
        ("old.doc", b"\xd0\xcf\x11\xe0", "unsupported file type .doc (save it as .docx)"),
        ("README", b"text", "unsupported file type (no extension)"),
        ("empty.md", b"", "empty file"),
        ("spaces.txt", b" \n\t\n", "empty file"),
        ("image.md", b"\x89PNG\r\n\x1a\n\x00\x00", "content is a PNG image, not text: the file extension is wrong"),
        ("doc.txt", b"%PDF-1.4\n%\xe2\xe3", "content is a PDF, not text: the file extension is wrong"),
        ("blob.txt", b"ab\x00cd" * 50, "binary content, not text"),
        ("controls.md", bytes(range(1, 9)) * 100, "binary content, not text"),
        ("fake.pdf", b"plain words", "not a PDF (no %PDF- header): the file extension is wrong"),
        ("fake.docx", b"plain words", "not a DOCX (not a ZIP container): the file extension is wrong"),
        ("header-only.csv", b"a,b,c\n", "a header but no data rows"),
        ("nothing.html", b"<html><script>x()</script></html>", "no text in it"),
    ],
)
def test_bad_files_are_refused_with_a_reason(tmp_path, name, data, reason):
    with pytest.raises(LoadError) as caught:
        load(tmp_path, name, data)
    assert str(caught.value) == reason


def test_damaged_pdf_and_docx_are_refused(tmp_path):
    with pytest.raises(LoadError, match=r"^damaged PDF \("):
        load(tmp_path, "broken.pdf", b"%PDF-1.4\n1 0 obj <<< garbage")
    with pytest.raises(LoadError, match=r"^damaged DOCX \(BadZipFile"):
        load(tmp_path, "broken.docx", b"PK\x03\x04" + b"\x01" * 100)


def without_entry(archive: bytes, name: str) -> bytes:
    """The ZIP archive with one entry left out."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as source, zipfile.ZipFile(out, "w") as copy:
        for entry in source.namelist():
            if entry != name:
                copy.writestr(entry, source.read(entry))
    return out.getvalue()


def test_builtin_errors_the_libraries_raise_on_damage_still_name_the_damaged_file(tmp_path):
    unknown_filter = make_pdf(["Otters swim."]).replace(b"<< /Length", b"<< /Filter /Bogus /Length")
    no_body = without_entry(make_docx([("Normal", "Kayaks.")]), "word/document.xml")

    with pytest.raises(LoadError) as pdf:
        load(tmp_path, "filter.pdf", unknown_filter)
    with pytest.raises(LoadError) as docx:
        load(tmp_path, "body.docx", no_body)

    assert str(pdf.value) == "damaged PDF (NotImplementedError: Unsupported filter /Bogus)"
    assert str(docx.value) == "damaged DOCX (its main part, the document's text, is missing)"


@pytest.mark.parametrize("name, data, limits, operator", [
    ("good.pdf", make_pdf(["Otters swim."]), Limits(pdf_pages="10"), ">"),
    ("good.docx", make_docx([("Normal", "Kayaks.")]), Limits(paragraphs="1000"), "<="),  # inside our callback in lxml's parser
], ids=["pdf", "docx"])
def test_a_bug_of_ours_inside_the_pdf_or_docx_loop_is_raised_not_called_a_damaged_file(tmp_path, name, data, limits, operator):
    (tmp_path / name).write_bytes(data)

    with pytest.raises(TypeError) as caught:
        load_path(tmp_path / name, name, RecordFields(), limits)

    assert str(caught.value) == f"'{operator}' not supported between instances of 'int' and 'str'"


def test_pdf_without_text_layer_says_to_ocr(tmp_path):
    with pytest.raises(LoadError, match="no text layer in the PDF"):
        load(tmp_path, "scan.pdf", make_pdf(["", ""]))


def test_a_single_line_too_long_to_be_text_is_refused(tmp_path):
    with pytest.raises(LoadError, match=f"a single line of {MAX_LINE_CHARS + 1:,} characters"):
        load(tmp_path, "one-line.md", b"y" * (MAX_LINE_CHARS + 1))
    docs, problems = load(tmp_path, "r.jsonl", json.dumps({"id": 1, "text": "z" * (MAX_LINE_CHARS + 1)}) + "\n" + json.dumps({"id": 2, "text": "ok"}))
    assert [d.doc_id for d in docs] == ["2"]
    assert problems[0].where == "line 1" and "too long to be readable text" in problems[0].reason


def test_unreadable_paths_are_refused(tmp_path):
    (tmp_path / "dangling.md").symlink_to(tmp_path / "gone.md")
    with pytest.raises(LoadError, match="not a regular file"):
        load_path(tmp_path / "dangling.md", "dangling.md", RecordFields())


@pytest.mark.parametrize("embedded", ["about:blank", "Untitled", "Document1", "Microsoft Word - report.docx", "  ",
                                      "https://intranet.example/page", "report.pdf", "---"])
def test_a_pdf_whose_embedded_title_is_a_placeholder_is_titled_by_its_file_name(tmp_path, embedded):
    path = tmp_path / "river-animals.pdf"
    path.write_bytes(make_pdf(["Otters live in rivers."], title=embedded))
    [document], _ = load_path(path, "river-animals.pdf", RecordFields())
    assert document.title == "river-animals"


@pytest.mark.parametrize("embedded, title", [("River animals", "River animals"), ("Microsoft Word - Otter survey 2024",
                                                                                     "Otter survey 2024")])
def test_a_pdf_whose_embedded_title_names_it_keeps_that_title(tmp_path, embedded, title):
    path = tmp_path / "scan0001.pdf"
    path.write_bytes(make_pdf(["Otters live in rivers."], title=embedded))
    [document], _ = load_path(path, "scan0001.pdf", RecordFields())
    assert document.title == title
