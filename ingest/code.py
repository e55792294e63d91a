"""Source code -> sections cut at its definitions, each headed by its symbol path ("class App > def route").

Python is parsed with the standard library's `ast`; the other languages with tree-sitter and the grammar packages
of the tree-sitter project; formats without definitions (SQL, YAML, TOML, or code no grammar reads) are cut at
their top-level statements, keys or tables where a line shows them, else left to the chunker's blank-line breaks.
"""
from __future__ import annotations

import ast
import importlib
import re
from dataclasses import dataclass, field

from ingest.documents import Document, Problem, Section

LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascript", ".ts": "typescript", ".mts": "typescript", ".cts": "typescript", ".tsx": "tsx",
    ".go": "go", ".java": "java", ".rs": "rust", ".c": "c", ".h": "c", ".cpp": "cpp", ".cc": "cpp", ".cxx": "cpp",
    ".hpp": "cpp", ".hh": "cpp", ".cs": "csharp", ".rb": "ruby", ".php": "php", ".sh": "shell", ".bash": "shell",
    ".sql": "sql", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml",
}
LANGUAGE_NAMES = {  # each language as the list of formats names it, in the order it lists them
    "python": "Python", "javascript": "JavaScript", "typescript": "TypeScript", "tsx": "TypeScript JSX (TSX)",
    "go": "Go", "java": "Java", "rust": "Rust", "c": "C", "cpp": "C++", "csharp": "C#", "ruby": "Ruby", "php": "PHP",
    "shell": "shell script", "sql": "SQL", "yaml": "YAML", "toml": "TOML",
}
MAX_NAME_CHARS = 80
LEADING = re.compile(r"(?!#\s*(?:!|include|define|undef|if|ifdef|ifndef|else|elif|endif|pragma|import)\b)(?:#|//|/\*|\*|--|@)")
"""Comment, doc comment and decorator lines that belong to the definition below them (not C's #include, nor #!)."""
SMALL_GAP_LINES = 2  # a few lines before a definition (a class line, an import) go with it rather than alone
NO_WORDS = re.compile(r"\bend\b|[\W_]+")  # what is left of a block of closing braces and `end`s: nothing


@dataclass
class Definition:
    """A function, class or other named definition: its label ("def route"), lines [start, end) and what it holds."""

    label: str
    start: int
    end: int
    children: list[Definition] = field(default_factory=list)


@dataclass(frozen=True)
class Grammar:
    """A tree-sitter grammar package and the node types that are definitions in it, with the word that labels each."""

    module: str
    definitions: dict[str, str]
    containers: frozenset[str] = frozenset()  # definitions whose own definitions are cut out too (classes, modules)
    function: str = "language"


JS = {
    "function_declaration": "function", "generator_function_declaration": "function", "class_declaration": "class",
    "method_definition": "method", "variable_declarator": "function",
}
TS = {
    **JS, "abstract_class_declaration": "class", "interface_declaration": "interface", "enum_declaration": "enum",
    "type_alias_declaration": "type", "internal_module": "namespace",
}
CLASSES = frozenset({
    "class_declaration", "abstract_class_declaration", "interface_declaration", "internal_module", "class_specifier",
    "struct_specifier", "namespace_definition", "trait_item", "impl_item", "mod_item", "enum_declaration",
    "record_declaration", "struct_declaration", "namespace_declaration", "class", "module", "trait_declaration",
})
GRAMMARS = {
    "javascript": Grammar("tree_sitter_javascript", JS, CLASSES),
    "typescript": Grammar("tree_sitter_typescript", TS, CLASSES, "language_typescript"),
    "tsx": Grammar("tree_sitter_typescript", TS, CLASSES, "language_tsx"),
    "go": Grammar("tree_sitter_go", {"function_declaration": "func", "method_declaration": "func", "type_spec": "type"}),
    "java": Grammar("tree_sitter_java", {
        "class_declaration": "class", "interface_declaration": "interface", "enum_declaration": "enum",
        "record_declaration": "record", "method_declaration": "method", "constructor_declaration": "constructor",
    }, CLASSES),
    "rust": Grammar("tree_sitter_rust", {
        "function_item": "fn", "struct_item": "struct", "enum_item": "enum", "trait_item": "trait", "impl_item": "impl",
        "mod_item": "mod", "macro_definition": "macro_rules!",
    }, CLASSES),
    "c": Grammar("tree_sitter_c", {"function_definition": "function", "struct_specifier": "struct"}),
    "cpp": Grammar("tree_sitter_cpp", {
        "function_definition": "function", "class_specifier": "class", "struct_specifier": "struct",
        "namespace_definition": "namespace",
    }, CLASSES),
    "csharp": Grammar("tree_sitter_c_sharp", {
        "class_declaration": "class", "struct_declaration": "struct", "interface_declaration": "interface",
        "enum_declaration": "enum", "record_declaration": "record", "method_declaration": "method",
        "constructor_declaration": "constructor", "namespace_declaration": "namespace",
    }, CLASSES),
    "ruby": Grammar("tree_sitter_ruby", {"method": "def", "singleton_method": "def self.", "class": "class", "module": "module"}, CLASSES),
    "php": Grammar("tree_sitter_php", {
        "function_definition": "function", "class_declaration": "class", "interface_declaration": "interface",
        "trait_declaration": "trait", "method_declaration": "function",
    }, CLASSES, "language_php"),
    "shell": Grammar("tree_sitter_bash", {"function_definition": "function"}),
}
FUNCTION_VALUES = {"arrow_function", "function_expression", "function", "generator_function"}
TOP_LEVEL_LINES = {  # where a section starts in formats without a grammar, and its heading
    "sql": re.compile(
        r"^\s*(?:CREATE|ALTER)\s+(?:OR\s+REPLACE\s+)?(?:TEMP(?:ORARY)?\s+)?"
        r"(TABLE|VIEW|MATERIALIZED\s+VIEW|FUNCTION|PROCEDURE|INDEX|UNIQUE\s+INDEX|TRIGGER|TYPE|SCHEMA|SEQUENCE)\s+"
        r"(?:IF\s+NOT\s+EXISTS\s+)?([\w.\"`\[\]]+)", re.IGNORECASE,
    ),
    "yaml": re.compile(r"^([A-Za-z_][\w.-]*)\s*:(?:\s|$)"),
    "toml": re.compile(r"^\s*(\[\[?\s*[^\]\n]+?\s*\]\]?)\s*(?:#.*)?$"),
}


def load_code(text: str, doc_id: str, file_name: str, language: str) -> tuple[Document, list[Problem]]:
    """A source file as sections cut at its definitions, headed by their symbol paths, with the language in metadata."""
    lines = text.split("\n")
    problems: list[Problem] = []
    try:
        definitions = definitions_of(text, language)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        reason = f"{type(exc).__name__}: {str(exc)[:120]}" if not isinstance(exc, RecursionError) else "nested too deeply"
        problems.append(Problem("", f"could not be parsed as {language} ({reason}); cut at blank lines instead", False))
        definitions = None
    if definitions is None:
        sections = line_sections(lines, TOP_LEVEL_LINES.get(language))
    else:
        sections = cut_sections(lines, definitions, (), 0, len(lines))
    return Document(doc_id, file_name, sections, {"language": language}), problems


def definitions_of(text: str, language: str) -> list[Definition] | None:
    """The file's top-level definitions (classes holding theirs), or None for a language without a parser."""
    if language == "python":
        return python_definitions(ast.parse(text).body)
    grammar = GRAMMARS.get(language)
    if grammar is None:
        return None
    from tree_sitter import Language, Parser

    module = importlib.import_module(grammar.module)
    tree = Parser(Language(getattr(module, grammar.function)())).parse(text.encode("utf-8"))
    return tree_definitions(tree.root_node, grammar)


def python_definitions(body: list[ast.stmt]) -> list[Definition]:
    """The functions and classes among Python statements, decorators included, with a class's methods inside it."""
    found = []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            start = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list]) - 1
            if isinstance(node, ast.ClassDef):
                found.append(Definition(f"class {node.name}", start, node.end_lineno, python_definitions(node.body)))
            else:
                keyword = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
                found.append(Definition(f"{keyword} {node.name}", start, node.end_lineno))
    return found


def tree_definitions(node, grammar: Grammar) -> list[Definition]:
    """The definitions under a tree-sitter node, not looking inside a definition unless it is a container."""
    found = []
    for child in node.named_children:
        label = grammar.definitions.get(child.type)
        if label and child.type == "variable_declarator" and getattr(child.child_by_field_name("value"), "type", None) not in FUNCTION_VALUES:
            label = None
        if label:
            inner = tree_definitions(child, grammar) if child.type in grammar.containers else []
            name = node_name(child)
            title = f"{label} {name}" if name and not label.endswith(".") else f"{label}{name}" if name else label
            found.append(Definition(title, child.start_point[0], child.end_point[0] + 1, inner))
        else:
            found.extend(tree_definitions(child, grammar))
    return found


def node_name(node) -> str:
    """A definition's name: its name field, else the innermost declarator (C, C++), else the type it implements (Rust)."""
    name = node.child_by_field_name("name")
    if name is None:
        declarator = node.child_by_field_name("declarator")
        while declarator is not None and declarator.child_by_field_name("declarator") is not None:
            declarator = declarator.child_by_field_name("declarator")
        name = declarator
    if name is None and node.type == "impl_item":
        implemented, trait = node.child_by_field_name("type"), node.child_by_field_name("trait")
        text = node_text(implemented) if implemented is not None else ""
        return f"{node_text(trait)} for {text}" if trait is not None else text
    return node_text(name) if name is not None else ""


def node_text(node) -> str:
    """A node's source text on one line, cut to a readable length."""
    return " ".join(node.text.decode("utf-8", "replace").split())[:MAX_NAME_CHARS]


def cut_sections(lines: list[str], definitions: list[Definition], path: tuple[str, ...], start: int, end: int) -> list[Section]:
    """Sections of lines[start:end]: each definition under its symbol path, the code between them under the path."""
    sections: list[Section] = []
    cursor = start
    for definition in sorted(definitions, key=lambda d: d.start):
        if definition.start < cursor:
            continue
        first = with_leading_comments(lines, definition.start, cursor)
        if sum(1 for line in lines[cursor:first] if line.strip()) <= SMALL_GAP_LINES:
            first = cursor
        sections.extend(block_section(lines, cursor, first, path))
        heading = path + (definition.label,)
        if definition.children:
            sections.extend(cut_sections(lines, definition.children, heading, first, definition.end))
        else:
            sections.extend(block_section(lines, first, definition.end, heading))
        cursor = max(cursor, definition.end)
    sections.extend(block_section(lines, cursor, end, path))
    return sections


def with_leading_comments(lines: list[str], start: int, floor: int) -> int:
    """The first line of a definition with the comment, doc comment or decorator lines right above it."""
    while start > floor and LEADING.match(lines[start - 1].strip()):
        start -= 1
    return start


def block_section(lines: list[str], start: int, end: int, path: tuple[str, ...]) -> list[Section]:
    """lines[start:end] as a section with its line numbers, or nothing when they hold no word (blank, braces)."""
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    text = "\n".join(lines[start:end])
    if not NO_WORDS.sub("", text):
        return []
    return [Section(text, path, {"lines": f"{start + 1}-{end}"})]


def line_sections(lines: list[str], starts: re.Pattern | None) -> list[Section]:
    """Sections that begin where a line matches starts (a table, a top-level key, a CREATE statement), else one."""
    sections: list[Section] = []
    first, heading = 0, ()
    for number, line in enumerate(lines if starts else ()):
        match = starts.match(line)
        if match:
            sections.extend(block_section(lines, first, number, heading))
            first, heading = number, (" ".join(" ".join(match.groups()).split())[:MAX_NAME_CHARS],)
    sections.extend(block_section(lines, first, len(lines), heading))
    return sections
