"""Which follow-ups need the conversation (and so a model call to reword them), and which questions name nothing to
search for: decided by a rule on the question's words, checked on lists in several styles and four languages."""
from __future__ import annotations

import pytest

from rag.chat.condense import STANDS_ALONE, condense_question
from rag.core.question_words import is_vague, refers_back
from tests.fake_llm import FakeBox, Reply

DEPENDENT = [
    # English: ellipsis, a bare why, continuations, pronouns and demonstratives with nothing to refer to
    "and on Windows?", "Why?", "why not?", "How so?", "What about macOS?", "How about the free tier?", "Tell me more",
    "Can you explain?", "Could you give an example?", "Which one?", "How do I install it?", "Does it work offline?",
    "Is it safe?", "What does that mean?", "Why is that?", "Is this correct?", "Where do I find them?",
    "Can I change its port?", "on Windows?", "With Docker?", "Windows too?", "But what if the file is missing?",
    "Also for PDFs?", "The same for Linux?", "You mentioned a config file, where is it?", "What was the first one?",
    "so what should I do now?", "ok, and then?",
    # French
    "Et sous Windows ?", "Pourquoi ?", "Comment ça marche ?", "Est-ce que ça marche hors ligne ?", "Et pour les PDF ?",
    "Sous Linux aussi ?", "Peux-tu expliquer ?", "Où est-il ?", "Comme ci-dessus, mais pour Linux ?",
    # Spanish
    "¿Y en Windows?", "¿Por qué?", "¿Cómo lo instalo?", "¿Eso funciona sin internet?", "¿Qué tal con Docker?",
    "¿También para Mac?",
    # German
    "Und unter Windows?", "Warum?", "Was bedeutet das?", "Wie installiere ich es?", "Funktioniert das auch offline?",
]
STANDALONE = [
    "How do I install the app on Windows?", "What formats can I ingest?", "Is it possible to use conda instead of pip?",
    "Does it matter which Python version I use?", "Is it normal for the model's error to vary between runs?",
    "I installed Docker but it does not start, what should I do?", "Can I still join the course after the start date?",
    "How do I fix this error: ModuleNotFoundError: No module named 'pandas'?", "Is this course free?",
    "What is the difference between ingest and --reset?", "Why does Chroma say the collection name is invalid?",
    "Where are my conversations stored?", "What if I miss the homework deadline?",
    "Which embedding model does the app use?", "How long does an ingest of 10,000 files take?",
    "Do I need the same Python version as the course?", "Where can I find the homework for week 3?", "top k",
    "Docker compose fails with exit code 137", "It is recommended to use Python 3.11 or later?",
    "Comment installer l'application sous Windows ?", "Est-il possible d'utiliser conda ?",
    "Il faut combien de mémoire pour le modèle ?", "Quels formats de fichiers sont acceptés ?",
    "Où sont stockées les conversations ?",
    "¿Cómo instalo la aplicación en Windows?", "¿Qué formatos de archivo acepta el programa?",
    "¿Dónde se guardan las conversaciones?", "¿Es posible usar conda en lugar de pip?",
    "Wie installiere ich die App unter Windows?", "Gibt es eine Möglichkeit, PDFs zu importieren?",
    "Welche Formate kann ich importieren?", "Wo werden die Unterhaltungen gespeichert?", "Ist es möglich, conda zu verwenden?",
]
VAGUE = [
    "stuff", "Stuff?", "things", "something", "hello", "hi there", "help", "help me", "?", "...", "4", "question1",
    "tell me stuff", "what?", "why", "info please", "test", "bonjour", "un truc", "Bonjour, une question", "¿algo?", "Hilfe", "Was?",
]
NAMES_SOMETHING = [
    "top k", "pdf", "ollama", "what is rag?", "docker", "python 3.12", "c++", "k8s", "how does it work?",
    "Where do I start?", "see what would change first", "what should I try first", "what about pictures",
    "preview changes", "is my data private", "¿Qué es Docker?", "C'est quoi Chroma ?", "Was ist ein Embedding?",
    "What is MIT?", "sin and cos", "man pages", "the bin folder", "why does it say it doesn't know",
]
HISTORY = [{"role": "user", "content": "How do I install the app?"}, {"role": "assistant", "content": "Run pip [1]."}]


def test_follow_ups_that_lean_on_the_conversation_are_told_from_questions_that_stand_alone():
    assert [q for q in DEPENDENT if not refers_back(q)] == []
    assert [q for q in STANDALONE if refers_back(q)] == []


def test_a_question_that_names_nothing_to_search_for_is_vague_and_one_word_that_names_a_topic_is_not():
    assert [q for q in VAGUE if not is_vague(q)] == []
    assert [q for q in NAMES_SOMETHING if is_vague(q)] == []


def test_a_follow_up_that_stands_alone_is_searched_as_asked_without_asking_the_model():
    box = FakeBox({"small-chat": 4096})

    condensed = condense_question("Which embedding model does the app use?", HISTORY, box, "small-chat", 4096)

    assert (condensed.query, condensed.fallback, box.requests) == (
        "Which embedding model does the app use?", "it does not refer to the earlier messages", [])
    assert STANDS_ALONE == "it does not refer to the earlier messages"


@pytest.mark.parametrize("question", ["and on Windows?", "Why is that?", "Et sous Windows ?"])
def test_a_follow_up_that_refers_back_is_reworded_by_the_model_once(question):
    box = FakeBox({"small-chat": 4096}, [Reply(["How do I install the app on Windows?"])])

    condensed = condense_question(question, HISTORY, box, "small-chat", 4096)

    assert (condensed.query, condensed.fallback, len(box.requests)) == ("How do I install the app on Windows?", None, 1)


@pytest.mark.parametrize(("reply", "reason"), [
    ("", "the model gave no reworded question"),
    ("You install it with pip [1].", "the model answered it instead of rewording it"),
    ("How do I install the app on Windows, " + "and on every other platform with every setting, " * 3,
     "the model's rewording was much longer than the question"),
])
def test_a_rewording_that_cannot_be_searched_for_is_said_in_plain_words(reply, reason):
    box = FakeBox({"small-chat": 4096}, [Reply([reply])])

    condensed = condense_question("and on Windows?", HISTORY, box, "small-chat", 4096)

    assert (condensed.query, condensed.fallback) == ("and on Windows?", reason)
