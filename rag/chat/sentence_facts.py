"""What a sentence states that its source must state too: numbers and dates, names, negation, content words."""
from __future__ import annotations

import re
from dataclasses import dataclass

WORD = re.compile(r"[^\W_](?:[\w'’.-]*[^\W_])?")
NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
MONTHS = frozenset("january february march april may june july august september october november december".split())
NEGATIONS = frozenset("not no never none nothing nobody nowhere neither nor cannot without".split())
STOPWORDS = frozenset("""a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing done down during each either else even ever every few for from
further get gets got had has have having he her here hers him his how i if in into is it its itself just let lets like
may me might more most much must my need needs of off on once only or other our ours out over own per same shall she
should so some such than that the their theirs them then there these they this those through thus to too under until
up upon us use used uses using very via was we were what when where whether which while who whom whose why will with
within would yet you your yours one ones way ways thing things make makes made first new many""".split())
CONTRACTION = re.compile(r"n['’]t\b", re.I)


@dataclass(frozen=True)
class Facts:
    """A text's content-word stems, numbers (dates and number words included), names, and whether it negates."""

    stems: frozenset[str]
    numbers: frozenset[str]
    names: frozenset[str]
    negated: bool


def stem(word: str) -> str:
    """A crude stem so that 'files', 'filed' and 'filing' meet: lower case, common endings cut, at most 6 letters."""
    word = word.lower().replace("’", "'")
    for ending in ("'s", "ing", "ed", "es", "s", "ly"):
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            word = word[: -len(ending)]
            break
    return word[:6]


def numbers_in(words: list[str], text: str) -> frozenset[str]:
    """The numbers a text states, as digits (a leading zero or thousands comma dropped), number words and months too."""
    found = {n.replace(",", "").lstrip("0") or "0" for n in NUMBER.findall(text)}
    found |= {NUMBER_WORDS[w.lower()] for w in words if w.lower() in NUMBER_WORDS}
    found |= {w.lower() for w in words if w.lower() in MONTHS and w[0].isupper()}
    return frozenset(found)


def names_in(words: list[str]) -> frozenset[str]:
    """Capitalised or mixed-case words that are not a sentence's first word: product, place and people's names."""
    names = set()
    for i, word in enumerate(words):
        first = i == 0 or words[i - 1].endswith((".", ":"))
        if not first and word != word.lower() and word.lower() not in STOPWORDS:
            names.add(word.lower())
    return frozenset(names)


def facts_of(text: str) -> Facts:
    """The facts of one sentence or passage."""
    text = CONTRACTION.sub(" not", text)
    words = WORD.findall(text)
    lowered = [w.lower() for w in words]
    stems = frozenset(stem(w) for w in lowered if w not in STOPWORDS and w not in NEGATIONS and len(w) > 2
                      and not NUMBER.fullmatch(w))
    negations = sum(w in NEGATIONS for w in lowered)
    return Facts(stems, numbers_in(words, text), names_in(words), negations % 2 == 1)


def word_set(text: str) -> frozenset[str]:
    """Every word of a passage in lower case, for finding a sentence's names anywhere in it."""
    return frozenset(w.lower() for w in WORD.findall(text))
