"""What a question's words say about it, in English, French, Spanish and German: whether it names anything to search
for (a vague question does not), and whether it leans on the conversation before it (a follow-up to rewrite).

Words are compared lower-cased, split at apostrophes, hyphens and other punctuation ("don't" is "don" and "t",
"l'installer" is "l" and "installer") and between letters and digits. A content word is one that is neither a function
word (articles, pronouns, auxiliaries, prepositions, question words), a vague word ("stuff", "help", "info") nor a number.
"""
from __future__ import annotations

import re

WORD = re.compile(r"[^\W\d_]+|\d+")  # runs of letters, runs of digits: "question1" is "question" and "1"
# Words of other languages that are also English words a question may be about ("man", "bin", "mit", "des", "sin",
# "dir", "est") are left out, so that "what is MIT?" still names something.
FUNCTION_WORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between both
but by can cannot could couldn d did didn do does doesn doing don done down during each either else even ever every
few for from further get gets getting got had hadn has hasn have haven having he her here hers him his how however i
if in into is isn it its itself just ll m may me might mine more most much must my myself neither no nor not now of
off on once one ones only or other our ours out over own per re s same shall she should shouldn since so some such t
than that the their theirs them then there these they this those though through to too under until up upon us ve
very was wasn way we were weren what when where whether which while who whom whose why will with within without won
would wouldn yet you your yours
au aux avec ce ceci cela celle celles celui ces cet cette ceux comment d dans de donc du elle elles en et eux
faut il ils j je l la le les leur leurs lui m ma mais me mes moi mon n ne nos notre nous on ou où par pas peut peux
plus pour pourquoi qu quand que quel quelle quelles quels qui quoi s sa sans se ses si sont sous suis sur ta te
tes toi ton tu un une vos votre vous y ça à
al algo cómo como con cual cuál cuando cuándo de del donde dónde el ella ellas ello ellos en es esa ese eso esta este
esto está están la las le les lo los me mi mis muy más no o para pero por porque qué que quien quién se ser si
su sus sí también te tu tú u un una unos unas usted y yo él
aber als am an auch auf aus bei bis da dafür damit dann darauf das dass davon dazu dein deine dem denn der
dich dies diese dieser dieses du ein eine einem einen einer er es für gibt habe haben ich ihm ihn
ihr ihre im in ist ja kann kein keine können mein meine mich mir muss nach nein nicht noch ob oder sein seine
sich sie sind so um und uns unter vom von warum was welche welcher welches wenn wer werden wie wieso wir wird wo
zu zum zur über
""".split())
VAGUE_WORDS = frozenset("""
anything answer answers detail details elaborate everything example examples explain give hello help hey hi info
information nothing ok okay please question questions say show something stuff tell test testing thank thanks thing
things topic whatever
aide bonjour chose choses détails dire exemple expliquer info infos merci question questions rien salut tout truc trucs
ayuda cosa cosas decir detalles ejemplo explicar gracias hola información nada pregunta preguntas todo
beispiel danke details ding dinge erklären etwas frage fragen hallo hilfe info infos nichts sache sachen
""".split())

# A follow-up that opens with one of these continues the conversation ("and on Windows?", "what about macOS?").
CONTINUATIONS = (
    "and", "but", "also", "or", "so", "then", "plus", "what about", "how about", "same for", "same with",
    "et", "mais", "ou", "alors", "donc", "aussi", "quid de",
    "y", "pero", "o", "entonces", "también", "qué tal",
    "und", "aber", "oder", "auch", "was ist mit",
)
# A short fragment that opens with a preposition is an ellipsis ("on Windows?", "sous Windows ?", "mit Docker?").
PREPOSITIONS = frozenset("""
on in for with without under via using from at by inside into over
sur sous dans pour avec sans en par chez
con sin para por bajo desde
auf unter mit ohne für bei im am zum zur
""".split())
FRAGMENT_WORDS = 4
# A short fragment that ends with one of these adds to what was asked before ("Windows too?", "Linux también?").
ADDITIONS = frozenset("too either aussi également también tampoco auch".split())
# Words that mean "the thing we talked about": a question holding one with nothing before it to refer to leans on the
# conversation ("how do I install it?"). Demonstratives count only where they stand for a noun ("why is that?").
PRONOUNS = frozenset("""
it its itself they them their theirs he him his she her hers
il elle ils elles lui ça cela ceci celui celle ceux celles
ello eso esto aquello él ella ellos ellas lo
es er ihn ihm damit dafür dazu davon darauf darüber
""".split())
DEMONSTRATIVES = frozenset("this that these those das dies diese dieses".split())
PREDICATES = frozenset("""
correct right wrong true ok okay possible normal necessary required needed enough safe fine allowed mandatory
recommended important better worth
""".split())
STANDS_FOR_A_NOUN = PREDICATES | frozenset("""
is was are were be does do did doesn mean means work works happen happens one ones s will would can could should
has have had also too not
ist sind war bedeutet heißt geht funktioniert so auch nicht noch schon
""".split())
BACK_REFERENCES = (
    "the same", "the above", "the previous", "the former", "the latter", "the other one", "which one", "you mentioned",
    "you said", "you just", "your answer", "the first one", "the second one", "the last one",
    "le même", "la même", "ci-dessus", "tu as dit", "vous avez dit", "lequel", "laquelle",
    "lo mismo", "el mismo", "la misma", "dijiste", "mencionaste",
    "dasselbe", "derselbe", "dieselbe", "du hast gesagt", "sie sagten",
)
COMPARED = frozenset("as que como wie".split())  # "the same version as ...", "la même que ..." name what they compare
RELATIVE = frozenset("que".split())  # "lo que ..." is "what ...", not "it"
# German "es" ("it") is also Spanish "es" ("is"): taken as "it" only last or before a word that follows a pronoun
ALSO_A_VERB = frozenset("es".split())
# "it" (il, es) is a dummy subject, not a reference, next to an auxiliary and before "to/that/if" or a predicate that
# goes on ("is it possible to ...", "is it normal for ...", "il est possible de ..."), or with a verb that takes one
# ("does it matter", "il faut", "gibt es").
DUMMY_SUBJECTS = frozenset("it il es".split())
AUXILIARIES = frozenset("is s was would will could can should might may does did est ist wäre".split())
DUMMY_AFTER = frozenset("to that if whether de d que qu si zu dass ob".split())
DUMMY_VERBS = frozenset("matter matters seems seem takes take faut y existe semble suffit reste manque vaut gibt".split())
ANTECEDENT = 2  # content words before a pronoun that give it something in the question itself to refer to


def words(text: str) -> list[str]:
    """The question's words, lower-cased, split at apostrophes and punctuation."""
    return WORD.findall(text.lower())


def is_content(word: str) -> bool:
    """True for a word that names something: neither a function word, a vague word nor a number."""
    return word not in FUNCTION_WORDS and word not in VAGUE_WORDS and not word.isdigit()


def content_words(text: str) -> list[str]:
    """The words of the text that name something."""
    return [word for word in words(text) if is_content(word)]


def is_vague(question: str) -> bool:
    """True when the question names nothing to search for ("stuff", "why?", "tell me more", "hello")."""
    return not content_words(question)


def refers_back(question: str) -> bool:
    """True when the question needs the conversation before it to be understood: it names nothing of its own, opens
    with a continuation, is a short fragment opening with a preposition or ending with "too", or refers to something
    it does not name."""
    found = words(question)
    return (
        not any(map(is_content, found))
        or opens_with(found, CONTINUATIONS)
        or (len(found) <= FRAGMENT_WORDS and (found[0] in PREPOSITIONS or found[-1] in ADDITIONS))
        or has_dangling_reference(found)
    )


def opens_with(found: list[str], phrases: tuple[str, ...]) -> bool:
    """True when the words begin with one of the phrases."""
    return any(found[: len(words(phrase))] == words(phrase) for phrase in phrases)


def has_dangling_reference(found: list[str]) -> bool:
    """True when a pronoun, a demonstrative standing for a noun or a phrase such as "the same" has no content word
    before it in the question to refer to."""
    for position, word in enumerate(found):
        if sum(map(is_content, found[:position])) >= ANTECEDENT:
            return False
        if refers_at(found, position):
            return True
    return False


def refers_at(found: list[str], position: int) -> bool:
    """True when the word at position refers to something said before (not a dummy subject, not an article)."""
    word, after = found[position], found[position + 1 : position + 5]
    if word in ALSO_A_VERB and after and after[0] not in STANDS_FOR_A_NOUN:
        return False
    if word in PRONOUNS:
        return not (word in DUMMY_SUBJECTS and is_dummy(found, position)) and not RELATIVE & set(after[:1])
    if word in DEMONSTRATIVES:
        return not after or after[0] in STANDS_FOR_A_NOUN
    return opens_with(found[position:], BACK_REFERENCES) and not COMPARED & set(after)


def is_dummy(found: list[str], position: int) -> bool:
    """True when "it" (il, es) is a dummy subject: "is it possible to...", "does it matter", "il faut", "gibt es"."""
    before = found[position - 1] if position else ""
    after = found[position + 1 : position + 5]
    if DUMMY_VERBS & {before, *after[:1]}:
        return True
    leads_on = bool(DUMMY_AFTER & set(after)) or (len(after) > 1 and after[0] in PREDICATES)  # "is it normal for ..."
    return bool(AUXILIARIES & {before, *after[:1]}) and leads_on
