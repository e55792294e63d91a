"""Ollama and an OpenAI-compatible server in use together: one model list, each request to the box serving the model."""
from __future__ import annotations

import json

import pytest

from rag.chat.ask import main as ask_main
from rag.core.errors import LLMError, LLMUnavailable
from rag.core.settings import Settings
from rag.llm.backend import ChatOptions, ChatUsage
from rag.llm.boxes import Boxes, open_backend
from rag.llm.ollama import Ollama
from rag.llm.openai_compatible import forget_model_info
from tests.ollama_standin import grounded_reply, unused_port
from tests.openai_standin import OpenAIStandin
from tests.test_answer_eval import ON_TOPIC, models, run_eval, write_truth  # noqa: F401  (models is a fixture)

QUESTION = [{"role": "user", "content": "What is the answer?"}]


@pytest.fixture(autouse=True)
def fresh_info():
    forget_model_info()
    yield
    forget_model_info()


@pytest.fixture
def openai_server():
    with OpenAIStandin(models=["Qwen/Qwen2.5-3B-Instruct", "qwen2.5:3b"], reply="From the GPU box [1].") as server:
        yield server


def both(ollama_host: str, openai_url: str) -> Boxes:
    backend = open_backend(Settings(ollama_host=ollama_host, openai_url=openai_url))
    assert isinstance(backend, Boxes)
    return backend


def test_only_ollama_is_used_until_an_openai_url_is_set(standin):
    assert isinstance(open_backend(Settings(ollama_host=standin.host)), Ollama)


def test_one_list_names_each_model_with_its_box(standin, openai_server):
    boxes = both(standin.host, openai_server.url)

    listed = boxes.list_models()

    assert [(e.name, e.box, e.can_chat) for e in listed] == [
        ("ollama:llama3.2:latest", "Ollama", True),
        ("ollama:nomic-embed-text:latest", "Ollama", False),
        ("ollama:qwen2.5:3b", "Ollama", True),
        ("openai:Qwen/Qwen2.5-3B-Instruct", f"127.0.0.1:{openai_server.port}", True),
        ("openai:qwen2.5:3b", f"127.0.0.1:{openai_server.port}", True),
    ]
    assert boxes.down_boxes() == []


def test_each_request_goes_to_the_box_that_serves_the_model(standin, openai_server):
    boxes = both(standin.host, openai_server.url)
    options = ChatOptions(4096, 0.1, 100)

    from_gpu = "".join(boxes.stream_chat("Qwen/Qwen2.5-3B-Instruct", QUESTION, options, ChatUsage()))
    from_ollama = "".join(boxes.stream_chat("ollama:llama3.2", QUESTION, options, ChatUsage()))

    assert from_gpu == "From the GPU box [1]." and from_ollama == "The answer is 42 [1]."
    assert [b["model"] for b in openai_server.chat_requests()] == ["Qwen/Qwen2.5-3B-Instruct"]
    assert [b["model"] for b in standin.chat_requests()] == ["llama3.2"]
    assert boxes.canonical("llama3.2") == "ollama:llama3.2:latest"
    assert boxes.box_of("openai:qwen2.5:3b").kind == "openai"


def test_a_name_both_boxes_serve_must_name_its_box(standin, openai_server):
    boxes = both(standin.host, openai_server.url)

    with pytest.raises(LLMError) as raised:
        boxes.model_info("qwen2.5:3b")

    assert str(raised.value) == (
        f"Model 'qwen2.5:3b' is served by Ollama and 127.0.0.1:{openai_server.port}: name the box, "
        "e.g. ollama:qwen2.5:3b or openai:qwen2.5:3b."
    )


def test_a_box_that_is_down_is_a_quiet_note_while_the_other_serves(openai_server):
    down = f"127.0.0.1:{unused_port()}"
    boxes = both(down, openai_server.url)

    assert [e.name for e in boxes.list_models()] == ["openai:Qwen/Qwen2.5-3B-Instruct", "openai:qwen2.5:3b"]
    [note] = boxes.down_boxes()
    assert note.startswith(f"Ollama did not answer: Cannot reach Ollama at http://{down}.")


def test_every_box_down_is_the_first_boxs_error():
    boxes = both(f"127.0.0.1:{unused_port()}", f"http://127.0.0.1:{unused_port()}")

    with pytest.raises(LLMUnavailable, match="Cannot reach Ollama"):
        boxes.list_models()


def test_ask_answers_from_the_openai_box_and_says_so_in_json(sample_store, openai_server, monkeypatch, capsys):
    monkeypatch.setenv("RAG_OPENAI_URL", openai_server.url)

    code = ask_main(["--json", "--model", "openai:Qwen/Qwen2.5-3B-Instruct", "How do I add my own documents?"])

    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (result["answer"], result["model"], result["backend"]) == (
        "From the GPU box [1].", "openai:Qwen/Qwen2.5-3B-Instruct", "openai")
    assert result["context"]["prompt_eval_count"] > 0 and result["sources"]
    [body] = openai_server.chat_requests()
    assert body["model"] == "Qwen/Qwen2.5-3B-Instruct"


def test_ask_through_ollama_says_ollama(sample_store, capsys):
    code = ask_main(["--json", "How do I add my own documents?"])

    assert code == 0 and json.loads(capsys.readouterr().out)["backend"] == "ollama"


@pytest.fixture
def sample_store(settings, guide_store, monkeypatch):
    """The module's guide store, named in RAG_STORE_DIR, with the stand-in Ollama at OLLAMA_HOST."""
    monkeypatch.setenv("RAG_STORE_DIR", str(guide_store))
    return settings


def test_answer_evaluation_compares_the_same_model_in_two_boxes(models, monkeypatch, tmp_path, capsys):
    with OpenAIStandin(models=["Qwen/Qwen2.5-3B-Instruct"], reply=grounded_reply) as gpu:
        gpu.usage_style = "final_chunk"
        monkeypatch.setenv("RAG_OPENAI_URL", gpu.url)
        truth = write_truth(tmp_path / "truth.csv", ON_TOPIC[:3])

        code, summary, _, err = run_eval(capsys, truth, "--answers", "--models",
                                         "ollama:grounded,openai:Qwen/Qwen2.5-3B-Instruct", "--out", tmp_path / "r.jsonl")

    assert code == 0, err
    ollama_row, openai_row = summary["models"]["ollama:grounded"], summary["models"]["openai:Qwen/Qwen2.5-3B-Instruct"]
    assert ollama_row["errors"] == openai_row["errors"] == 0
    assert ollama_row["citation_hit"] == openai_row["citation_hit"] > 0.5  # the same replies in either runtime
    assert ollama_row["answer_similarity"] == openai_row["answer_similarity"]
    assert ollama_row["tokens_per_s"] == 50.0 and openai_row["tokens_per_s"] > 0
    assert [body["model"] for body in gpu.chat_requests()] == ["Qwen/Qwen2.5-3B-Instruct"] * 3
