"""One table of exit codes: every CLI's --help is made from it, and the README gives it once."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest.__main__ import parse_args as ingest_args
from rag.chat.ask import parse_args as ask_args
from rag.core.errors import EXIT_CODES, INTERRUPTED, OK, OTHER, OUTPUT_CLOSED, SETTING, STORE
from rag.evaluation.cli import parse_args as eval_args

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("parse_args, codes", [
    (ask_args, sorted(EXIT_CODES)),
    (ingest_args, [OK, OTHER, SETTING, STORE, INTERRUPTED, OUTPUT_CLOSED]),
    (eval_args, [code for code in sorted(EXIT_CODES) if code != OUTPUT_CLOSED]),
], ids=["rag.ask", "ingest", "rag.eval"])
def test_each_cli_help_lists_its_exit_codes_in_the_words_of_the_one_table(parse_args, codes, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    shown = " ".join(capsys.readouterr().out.split()).replace("- ", "-")  # help text is wrapped, also at hyphens

    assert shown.endswith("exit codes: " + ", ".join(f"{code} {EXIT_CODES[code]}" for code in codes) + ".")


def test_the_readme_gives_the_exit_codes_in_one_table_with_every_code():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")

    assert readme.count("| exit | meaning |") == 1
    assert [int(code) for code in re.findall(r"^\| (\d+) \| ", readme, re.MULTILINE)] == sorted(EXIT_CODES)
