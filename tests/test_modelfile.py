"""The top-level Modelfile parses as Ollama reads it and matches what the app sends."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from rag.chat.prompt import SYSTEM_RULES
from rag.core.settings import Settings

MODELFILE = Path(__file__).resolve().parent.parent / "Modelfile"
# Ollama's api.Options fields that a Modelfile PARAMETER may set, with their types.
PARAMETER_TYPES = {
    "num_ctx": int, "num_batch": int, "num_gpu": int, "main_gpu": int, "num_thread": int, "num_keep": int,
    "seed": int, "num_predict": int, "top_k": int, "repeat_last_n": int, "mirostat": int,
    "temperature": float, "top_p": float, "min_p": float, "typical_p": float, "repeat_penalty": float,
    "presence_penalty": float, "frequency_penalty": float, "mirostat_tau": float, "mirostat_eta": float,
    "penalize_newline": bool, "use_mmap": bool, "numa": bool, "stop": str,
}


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, argument) pairs; triple-quoted arguments may span lines; '#' lines are comments."""
    commands, lines = [], iter(text.splitlines())
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, _, rest = stripped.partition(" ")
        rest = rest.strip()
        if '"""' in rest:
            opening = rest.index('"""')
            body = rest[opening + 3:]
            while '"""' not in body:
                body += "\n" + next(lines)  # StopIteration here means an unclosed """, which fails the test
            rest = rest[:opening] + body[: body.index('"""')]
            assert body[body.index('"""') + 3:].strip() == "", f"text after closing quotes in {name}"
        commands.append((name.upper(), rest))
    return commands


def parameter_value(raw: str, kind: type):
    """A PARAMETER value converted as Ollama converts it; raises ValueError when it does not fit the type."""
    if kind is str:
        match = re.fullmatch(r'"(.*)"|(\S+)', raw)
        if not match:
            raise ValueError(raw)
        return match.group(1) if match.group(1) is not None else match.group(2)
    if kind is bool:
        if raw not in ("true", "false"):
            raise ValueError(raw)
        return raw == "true"
    return kind(raw)


@pytest.fixture(scope="module")
def commands():
    return parse_modelfile(MODELFILE.read_text())


def parameters(commands) -> dict[str, list]:
    values: dict[str, list] = {}
    for name, argument in commands:
        if name == "PARAMETER":
            key, _, raw = argument.partition(" ")
            values.setdefault(key, []).append(parameter_value(raw.strip(), PARAMETER_TYPES[key]))
    return values


def test_the_modelfile_is_its_base_its_parameters_and_the_system_prompt_and_nothing_else(commands):
    """No MESSAGE (Ollama puts those before every chat's own messages), no TEMPLATE (Qwen's own stays, whose turn
    markers the stop tokens name), no ADAPTER: docs-qa is sent exactly what the app sends any model."""
    assert [name for name, _ in commands] == ["FROM"] + ["PARAMETER"] * 8 + ["SYSTEM"]


def test_from_comes_first_and_once_naming_a_small_instruct_model(commands):
    froms = [argument for name, argument in commands if name == "FROM"]

    assert commands[0][0] == "FROM"
    assert froms == ["qwen2.5:3b"]


def test_every_parameter_is_one_ollama_knows_of_its_type_set_once_but_stop(commands):
    assert parameters(commands) == {
        "num_ctx": [8192], "temperature": [0.1], "top_p": [0.9], "repeat_penalty": [1.05], "num_predict": [1024],
        "stop": ["<|im_end|>", "<|im_start|>", "<|endoftext|>"],
    }


def test_context_and_answer_room_match_the_app_defaults(commands):
    values = parameters(commands)
    defaults = Settings()

    assert values["num_ctx"] == [defaults.num_ctx]
    assert values["num_predict"] == [defaults.answer_tokens]
    assert values["temperature"] == [defaults.temperature]
    assert values["temperature"][0] <= 0.2


def test_stop_tokens_cover_qwens_chat_template(commands):
    assert set(parameters(commands)["stop"]) == {"<|im_end|>", "<|im_start|>", "<|endoftext|>"}


def test_system_prompt_is_the_apps_grounding_rules(commands):
    systems = [argument for name, argument in commands if name == "SYSTEM"]

    assert systems == [SYSTEM_RULES]
    assert "[1]" in SYSTEM_RULES and "do not answer the question" in SYSTEM_RULES


def test_parser_rejects_what_ollama_would():
    with pytest.raises(ValueError):
        parameter_value("eight", int)
    with pytest.raises(ValueError):
        parameter_value("yes", bool)
    assert parse_modelfile('from x\nsystem """a\nb"""\n# note\nPARAMETER stop "<|x|>"') == [
        ("FROM", "x"), ("SYSTEM", "a\nb"), ("PARAMETER", 'stop "<|x|>"')
    ]
