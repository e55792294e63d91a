"""Source code: cut at definitions with symbol paths, the language in metadata, identifiers searchable by their words."""
from __future__ import annotations

from pathlib import Path

import pytest

from ingest.loaders import RecordFields, load_path
from ingest.pipeline import IngestOptions, ingest
from rag.core.settings import Settings
from rag.search.chunk_index import chunk_tokens, tokenize, with_identifier_words
from rag.search.retrieval import Retriever
from rag.store.chroma import open_collection

SERVER_PY = '''"""A tiny web server."""
import json

PORT = 8080


class App:
    """Dispatches requests."""

    def __init__(self):
        self.table = {}

    # the lookup every request goes through
    @staticmethod
    def route_handler(path):
        return TABLE.get(path)


async def serve_forever(app):
    while True:
        await app.step()
'''

CACHE_GO = '''package cache

import "sync"

// Store keeps values for a while.
type Store struct {
	mu sync.Mutex
}

// EvictStaleEntries drops what the clock says is old.
func (s *Store) EvictStaleEntries(now int64) int {
	return 0
}
'''

WIDGETS_JS = '''// Widgets on the dashboard.
export class Dashboard {
  renderSparkline(values) {
    return values.length;
  }
}

const parseQueryString = (query) => query.split("&");
'''


def load(tmp_path: Path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return load_path(path, name, RecordFields())


def outline(document) -> list[tuple[str, str]]:
    """Each section's symbol path and line range."""
    return [(" > ".join(section.headings), section.metadata["lines"]) for section in document.sections]


def test_python_is_cut_at_functions_and_classes_with_the_symbol_path_as_heading(tmp_path):
    (document,), problems = load(tmp_path, "server.py", SERVER_PY)

    assert problems == []
    assert (document.title, document.metadata) == ("server.py", {"language": "python"})
    assert outline(document) == [
        ("", "1-4"),
        ("class App > def __init__", "7-11"),  # the class line and docstring go with it: two lines are not worth a chunk
        ("class App > def route_handler", "13-16"),  # its comment and decorator with it
        ("async def serve_forever", "19-21"),
    ]
    assert document.sections[2].text == (
        "    # the lookup every request goes through\n    @staticmethod\n    def route_handler(path):\n"
        "        return TABLE.get(path)"
    )


@pytest.mark.parametrize("name, text, expected", [
    ("cache.go", CACHE_GO, [("type Store", "1-8"), ("func EvictStaleEntries", "10-13")]),
    ("widgets.js", WIDGETS_JS, [("class Dashboard > method renderSparkline", "1-5"), ("function parseQueryString", "8-8")]),
    ("shapes.rs", "struct Circle { r: f64 }\n\nimpl Area for Circle {\n    fn area(&self) -> f64 { self.r }\n}\n",
     [("struct Circle", "1-1"), ("impl Area for Circle > fn area", "3-4")]),
    ("math.c", "#include <math.h>\n\n/* the hypotenuse */\ndouble hypot2(double a, double b) {\n  return sqrt(a*a + b*b);\n}\n",
     [("function hypot2", "1-6")]),
    ("Bank.java", "class Bank {\n  void deposit(int cents) {\n  }\n}\n", [("class Bank > method deposit", "1-3")]),
    ("greeter.rb", "module Greetings\n  class Greeter\n    def hello\n      'hi'\n    end\n  end\nend\n",
     [("module Greetings > class Greeter > def hello", "1-5")]),
    ("backup.sh", "#!/bin/sh\nset -e\n\nbackup_files() {\n  cp -r \"$1\" /backup\n}\n\nbackup_files ~/notes\n",
     [("function backup_files", "1-6"), ("", "8-8")]),
])
def test_other_languages_are_cut_at_their_definitions(tmp_path, name, text, expected):
    (document,), problems = load(tmp_path, name, text)

    assert problems == []
    assert outline(document) == expected


@pytest.mark.parametrize("name, text, expected", [
    ("schema.sql", "-- the schema\n\nCREATE TABLE users (id int);\n\ncreate index if not exists by_name on users(name);\n",
     [("", "1-1"), ("TABLE users", "3-3"), ("index by_name", "5-5")]),
    ("config.yaml", "server:\n  port: 80\ndatabase:\n  url: sqlite://\n", [("server", "1-2"), ("database", "3-4")]),
    ("pyproject.toml", 'title = "x"\n[tool.poetry]\nname = "x"\n\n[[bin]]\nname = "y"\n',
     [("", "1-1"), ("[tool.poetry]", "2-3"), ("[[bin]]", "5-6")]),
])
def test_sql_yaml_and_toml_are_cut_at_their_statements_keys_and_tables(tmp_path, name, text, expected):
    (document,), _ = load(tmp_path, name, text)

    assert outline(document) == expected


def test_python_that_does_not_parse_is_cut_at_blank_lines_with_a_warning(tmp_path):
    (document,), problems = load(tmp_path, "broken.py", "def ok():\n    return 1\n\ndef broken(:\n    pass\n")

    assert outline(document) == [("", "1-5")]
    assert [(p.reason, p.skipped) for p in problems] == [(
        "could not be parsed as python (SyntaxError: invalid syntax (<unknown>, line 4)); cut at blank lines instead", False,
    )]


def test_identifiers_in_code_are_indexed_with_the_words_they_join_and_prose_is_not_split():
    assert with_identifier_words("def route_handler(): HTTPServer getUserName größe_wert __init__ plain words") == (
        "def route_handler route handler(): HTTPServer HTTP Server getUserName get User Name größe_wert größe wert "
        "__init__ plain words"
    )
    code, prose = chunk_tokens(["def route_handler(path):"] * 2, [{"language": "python"}, {}])
    assert (code, prose) == (["def", "route_handl", "rout", "handler", "path"], ["def", "route_handl", "path"])
    assert tokenize(["route_handler"]) == [["route_handl"]]  # a question is not split: it matches the whole identifier


def search(settings: Settings, embedder, question: str, mode: str = "hybrid"):
    collection = open_collection(settings, embedder.name, embedder.dimension, create=False)
    return Retriever(collection, embedder, mode=mode).search(question, 3)


def test_code_is_ingested_and_each_file_found_by_its_symbols_with_the_symbol_path(tmp_path, embedder):
    code = tmp_path / "code"
    code.mkdir()
    (code / "server.py").write_text(SERVER_PY)
    (code / "cache.go").write_text(CACHE_GO)
    (code / "widgets.js").write_text(WIDGETS_JS)
    (code / "notes.md").write_text("# Notes\n\nThe route to the harbour is closed; the handler of the ferry said so.\n")
    settings = Settings(store_dir=tmp_path / "store")

    report = ingest([code], settings, embedder, IngestOptions())

    assert (report.skipped, report.warnings) == ([], [])
    found = search(settings, embedder, "route handler lookup")[0]
    assert (found.doc_id, found.chunks[0].metadata["headings"], found.metadata["language"]) == (
        "server.py", "class App > def route_handler", "python",
    )
    found = search(settings, embedder, "evict stale entries")[0]
    assert (found.doc_id, found.chunks[0].metadata["headings"], found.metadata["language"]) == (
        "cache.go", "func EvictStaleEntries", "go",
    )
    found = search(settings, embedder, "render sparkline")[0]
    assert (found.doc_id, found.chunks[0].metadata["headings"]) == ("widgets.js", "class Dashboard > method renderSparkline")
    # the words of route_handler alone find it by keywords, ahead of prose that has both words apart
    assert [d.doc_id for d in search(settings, embedder, "route handler", mode="keyword")][:1] == ["server.py"]
