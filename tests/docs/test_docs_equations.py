"""The numbered equations of docs/derivations.md and docs/losses.md, their table in
docs/equations.md, and the math markup GitHub has to typeset.

* Every numbered equation (``\\tag{X1}`` in a ```math block, or a visible ``**(X1)**`` label
  in a table row) has exactly one row in docs/equations.md, and every row names an equation
  that exists, under the section its link points to.
* Every code object a row names imports (``module:attribute.path``) and its link points to that
  module's file; every test a row names (``tests/file.py::test_name`` or
  ``tests/file.py::Class::test_name``) is defined in that file, and its link points there.
* The math survives GitHub: inline ``$…$`` spans avoid what GitHub's markdown pass would
  eat or turn into emphasis before MathJax sees them (backslash-escaped punctuation such as
  ``\\{`` or ``\\|``, ``*``, ``~``, an ``_`` that could open emphasis, a ``<`` that starts an
  HTML tag, ``|`` inside a table); no math is left as Unicode outside math; no issue numbers.

* Every code object a row names cites the row's equation in its docstring, as
  ``(docs/derivations.md, eq. L1)`` or ``(docs/losses.md, eqs. MM2, MM4)`` (a module-level
  constant, which has no docstring of its own, in the comment right above it); every such
  citation anywhere in minigan/ is well formed and names an equation numbered in that file.

The checker is tested on wrong tables too: a wrong module, attribute, test name, file, link
or label must each be reported; so are a missing citation and one of an equation that is
not numbered.
"""
from __future__ import annotations

import ast
import functools
import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("docs/derivations.md", "docs/losses.md")
TABLE = "docs/equations.md"

LABEL = r"[A-Z]+[0-9]+"
TAG = re.compile(r"\\tag\{(" + LABEL + r")\}")
VISIBLE = re.compile(r"\*\*\((" + LABEL + r")\)\*\*")
# a citation in a docstring: "(docs/losses.md, eq. MM1)", "(docs/derivations.md, eqs. L2, L10)",
# several files joined by "; "
CITED = r"docs/\w+\.md, eqs?\. " + LABEL + r"(?:, " + LABEL + r")*"
CITATION = re.compile(r"\((" + CITED + r")(?:; (" + CITED + r"))*\)")
# anything that looks like one, so that a misspelt citation is reported rather than skipped
LOOSE_CITATION = re.compile(r"\(docs/[^,()\s]*, eqs?\b[^()]*\)")
LINK = re.compile(r"\[`?([^`\]]+)`?\]\(([^)\s]+)\)")
# math written as Unicode outside $…$ and ```math (code spans and code blocks excepted)
MATH_CHARS = re.compile("[∂Σ∑‖ᵀ²³√∇⟨⟩≤≥∈→↦≠±∞∫ℝ∘⊙αβγδεηθκλμνπρσφχψωΓΔΛΠΦΨΩ]")


# --- reading markdown as GitHub does (the parts that matter here) -------------------------

def split_blocks(text: str):
    """(prose lines with their numbers, math blocks) of a markdown text: fenced code blocks
    are dropped, ```math blocks collected (their content is given to MathJax as is)."""
    prose, math, fence, body = [], [], None, []
    for number, line in enumerate(text.splitlines(), 1):
        if fence is None and line.lstrip().startswith("```"):
            fence, body = line.strip()[3:].strip(), []
        elif fence is not None and line.strip().startswith("```"):
            if fence == "math":
                math.append("\n".join(body))
            fence = None
        elif fence is not None:
            body.append(line)
        else:
            prose.append((number, line))
    assert fence is None, "an unclosed code fence"
    return prose, math


def without_code_spans(line: str) -> str:
    return re.sub(r"(`+).+?\1", " ", line)


def inline_math(line: str):
    """The $…$ spans of a prose line (code spans removed), with the problems of the line's
    dollar signs: an opening $ before a space, a closing $ after a space or before a
    letter/digit, an opening $ right after a letter/digit, an unmatched $."""
    spans, problems = [], []
    rest = without_code_spans(line)
    positions = [m.start() for m in re.finditer(r"(?<!\\)\$", rest)]
    if len(positions) % 2:
        problems.append("an odd number of $")
    for a, b in zip(positions[::2], positions[1::2]):
        body = rest[a + 1:b]
        spans.append(body)
        if not body or body[0].isspace() or body[-1].isspace():
            problems.append(f"${body}$: space just inside a $")
        if a > 0 and rest[a - 1].isalnum():
            problems.append(f"${body}$: a letter or digit right before the opening $")
        if b + 1 < len(rest) and rest[b + 1].isalnum():
            problems.append(f"${body}$: a letter or digit right after the closing $")
    return spans, problems


def inline_problems(body: str, in_table: bool) -> list[str]:
    """What GitHub's markdown pass would do to this inline math before MathJax reads it."""
    problems = []
    for escape in re.findall(r"\\[!-/:-@\[-`{-~]", body):   # backslash + ASCII punctuation
        problems.append(f"{escape!r} (markdown eats the backslash)")
    for char in "*~":
        if char in body:
            problems.append(f"{char!r} (markdown emphasis or strikethrough)")
    for m in re.finditer(r"_", body):
        if m.start() == 0 or not body[m.start() - 1].isalnum():
            problems.append("'_' after a non-alphanumeric character (it can open emphasis)")
    if re.search(r"<[A-Za-z/!?]", body):
        problems.append("'<' before a letter (an HTML tag)")
    if "&" in body:
        problems.append("'&' (an HTML entity)")
    if in_table and "|" in body:
        problems.append("'|' inside a table cell (use \\vert)")
    return [f"${body}$: {p}" for p in problems]


def math_problems(path: str) -> list[str]:
    text = (ROOT / path).read_text()
    prose, _ = split_blocks(text)
    problems = []
    for number, line in prose:
        spans, line_problems = inline_math(line)
        in_table = line.lstrip().startswith("|")
        for body in spans:
            line_problems += inline_problems(body, in_table)
        outside = re.sub(r"(?<!\\)\$[^$]*(?<!\\)\$", " ", without_code_spans(line))
        outside = re.sub(r"\]\([^)]*\)", "]", outside)   # link targets
        for char in sorted(set(MATH_CHARS.findall(outside))):
            line_problems.append(f"{char!r} outside math")
        if re.search(r"\bissues?\s*#?\d+|#\d+\b", outside, re.IGNORECASE):
            line_problems.append("an issue number")
        problems += [f"{path}:{number}: {p}" for p in line_problems]
    return problems


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but - and _ dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def sections(text: str) -> dict[str, str]:
    """anchor -> the text of that section (from its heading to the next heading, math blocks
    included; "" for the text before the first heading)."""
    out, anchor, lines, fence = {}, "", [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        if not fence and re.match(r"#{1,6} ", line):
            out[anchor] = out.get(anchor, "") + "\n".join(lines)
            anchor, lines = github_slug(line.lstrip("#")), []
        lines.append(line)
    out[anchor] = out.get(anchor, "") + "\n".join(lines)
    return out


def labels(text: str) -> list[str]:
    return TAG.findall(text) + VISIBLE.findall(text)


# --- the table -----------------------------------------------------------------------------

def table_rows(text: str):
    """(label cell, code cell, tests cell) of every body row of the table(s) in the text."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0].lower() in ("eq.", "equation"):
            continue
        rows.append((cells[0], cells[2], cells[3]))
    return rows


@functools.lru_cache(maxsize=None)
def _syntax_tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def defines_test(path: Path, name: str) -> bool:
    """Whether tests/file.py defines test ``name`` (``Class::test`` for a method)."""
    tree = _syntax_tree(path)
    parts = name.split("::")
    scope = tree.body
    for part in parts[:-1]:
        classes = [n for n in scope if isinstance(n, ast.ClassDef) and n.name == part]
        if not classes:
            return False
        scope = classes[0].body
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == parts[-1]
               for n in scope)


def check_code(name: str, target: str) -> list[str]:
    module_name, _, attrs = name.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        return [f"{name}: module does not import ({e})"]
    expected = Path(obj.__file__).resolve()
    if (ROOT / "docs" / target).resolve() != expected:
        return [f"{name}: link {target} is not {expected.relative_to(ROOT)}"]
    for attr in filter(None, attrs.split(".")):
        if not hasattr(obj, attr):
            return [f"{name}: no attribute {attr!r}"]
        obj = getattr(obj, attr)
    return []


def check_test(name: str, target: str) -> list[str]:
    file, sep, test = name.partition("::")
    path = ROOT / file
    if not sep or not file.startswith("tests/") or not path.is_file():
        return [f"{name}: no such test file"]
    if (ROOT / "docs" / target).resolve() != path.resolve():
        return [f"{name}: link {target} is not {file}"]
    if not defines_test(path, test):
        return [f"{name}: {test} is not defined in {file}"]
    return []


def check_table(table_text: str, docs: dict[str, str]) -> list[str]:
    """Every problem of the table against the docs' numbered equations (empty: all right)."""
    problems, seen = [], {}
    defined = {}
    for path, text in docs.items():
        for anchor, body in sections(text).items():
            for label in labels(body):
                if label in defined:
                    problems.append(f"{label} is numbered twice ({defined[label][0]}, {path})")
                defined[label] = (path, anchor)
    for label_cell, code_cell, tests_cell in table_rows(table_text):
        links = LINK.findall(label_cell)
        if len(links) != 1:
            problems.append(f"{label_cell!r}: the equation cell must be one link")
            continue
        label, target = links[0]
        file, _, anchor = target.partition("#")
        if label in seen:
            problems.append(f"{label}: two rows")
        seen[label] = True
        if label not in defined:
            problems.append(f"{label}: no such numbered equation")
        elif ("docs/" + file, anchor) != defined[label]:
            problems.append(f"{label}: link {target} does not point to its section "
                            f"{defined[label][0]}#{defined[label][1]}")
        code, tests = LINK.findall(code_cell), LINK.findall(tests_cell)
        if not code:
            problems.append(f"{label}: no code named")
        if not tests:
            problems.append(f"{label}: no test named")
        for name, link in code:
            problems += [f"{label}: {p}" for p in check_code(name, link)]
        for name, link in tests:
            problems += [f"{label}: {p}" for p in check_test(name, link)]
    for label in sorted(set(defined) - set(seen)):
        problems.append(f"{label}: numbered in {defined[label][0]} but not in the table")
    return problems


def _docs():
    return {path: (ROOT / path).read_text() for path in DOCS}


# --- the docstrings' citations --------------------------------------------------------------

def citations(text: str) -> set[tuple[str, str]]:
    """(docs file, label) of every well-formed citation in the text."""
    out = set()
    for m in LOOSE_CITATION.finditer(text):
        if CITATION.fullmatch(m.group()):
            for part in m.group()[1:-1].split("; "):
                doc, _, labels_ = part.partition(", ")
                out.update((doc, label) for label in re.findall(LABEL, labels_))
    return out


def resolve(name: str):
    """(object, module) of a table's ``module:attribute.path``."""
    module_name, _, attrs = name.partition(":")
    module = obj = importlib.import_module(module_name)
    for attr in attrs.split("."):
        obj = getattr(obj, attr)
    return obj, module


def cited_text(name: str) -> str:
    """Where ``name`` cites its equations: its own docstring; for a module-level constant (no
    docstring of its own) the comment lines right above its assignment."""
    obj, module = resolve(name)
    attrs = name.partition(":")[2]
    if callable(obj) or isinstance(obj, property):
        qualname = getattr(obj, "__qualname__", attrs)
        if qualname != attrs:   # an inherited method: its docstring belongs to another object
            return f"<{name} is {qualname}>"
        return obj.__doc__ or ""
    lines = Path(module.__file__).read_text().splitlines()
    for node in _syntax_tree(Path(module.__file__)).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == attrs for t in targets):
            above = []
            for line in reversed(lines[:node.lineno - 1]):
                if not line.lstrip().startswith("#"):
                    break
                above.append(line)
            return "\n".join(reversed(above))
    return ""


def uncited(table_text: str, text_of=cited_text) -> list[str]:
    """Every (equation, code object) of the table whose docstring does not cite the equation."""
    problems = []
    for label_cell, code_cell, _ in table_rows(table_text):
        links = LINK.findall(label_cell)
        if len(links) != 1:
            continue   # check_table reports it
        label, target = links[0]
        doc = "docs/" + target.partition("#")[0]
        for name, _ in LINK.findall(code_cell):
            text = text_of(name)
            if (doc, label) not in citations(text):
                inherited = f" ({text[1:-1]})" if text.startswith("<") else ""
                problems.append(f"{label}: {name} does not cite ({doc}, eq. {label}){inherited}")
    return problems


def wrong_citations(sources: dict[str, str], docs: dict[str, str]) -> list[str]:
    """Every citation in the sources that is malformed or names an equation its docs file
    does not number."""
    defined = {(path, label) for path, text in docs.items() for label in labels(text)}
    problems = []
    for path, text in sources.items():
        for m in LOOSE_CITATION.finditer(text):
            if not CITATION.fullmatch(m.group()):
                problems.append(f"{path}: malformed citation {m.group()}")
            for doc, label in sorted(citations(m.group()) - defined):
                problems.append(f"{path}: {m.group()} cites {label}, not numbered in {doc}")
    return problems


def _sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text() for p in sorted((ROOT / "minigan").rglob("*.py"))}


# --- the tests -----------------------------------------------------------------------------

def test_every_numbered_equation_maps_to_code_and_tests_that_exist():
    problems = check_table((ROOT / TABLE).read_text(), _docs())
    assert not problems, "\n".join(problems)


def test_the_docs_number_their_equations():
    for path, text in _docs().items():
        _, math = split_blocks(text)
        untagged = [m for m in math if not TAG.search(m)]
        assert not untagged, f"{path}: display equations without \\tag: {untagged}"
        assert len(labels(text)) >= 20, f"{path}: only {len(labels(text))} numbered equations"


@pytest.mark.parametrize("path", DOCS + (TABLE,))
def test_math_survives_githubs_markdown(path):
    problems = math_problems(path)
    assert not problems, "\n".join(problems)


def _first_row(table: str) -> str:
    return next(line for line in table.splitlines() if line.startswith("| [") and "::" in line)


@pytest.mark.parametrize("wrong, expected", [
    (lambda row: row.replace("`minigan.", "`minigan.nosuch", 1), "does not import"),
    (lambda row: re.sub(r"(`minigan\.[\w.]+:\w+)", r"\1Nosuch", row, count=1), "no attribute"),
    (lambda row: re.sub(r"::(test_\w+)", r"::\1_nosuch", row, count=1), "is not defined in"),
    (lambda row: re.sub(r"`tests/[\w/]+\.py", "`tests/test_nosuch.py", row, count=1), "no such test file"),
    (lambda row: re.sub(r"\]\(\.\./tests/[\w/]+\.py\)", "](../tests/checks/test_gradcheck.py)", row, count=1),
     "is not tests/"),
    (lambda row: re.sub(r"\]\(\.\./minigan/[\w/]+\.py\)", "](../minigan/gradcheck.py)", row, count=1),
     "is not minigan/"),
    (lambda row: re.sub(r"\[(" + LABEL + r")\]", "[ZZ9]", row, count=1), "no such numbered equation"),
    (lambda row: re.sub(r"\.md#[\w-]+", ".md#nosuch", row, count=1), "does not point to its section"),
], ids=lambda v: v.replace(" ", "-").strip("/") if isinstance(v, str) else "wrong")
def test_the_checker_reports_a_wrong_row(wrong, expected):
    table = (ROOT / TABLE).read_text()
    row = _first_row(table)
    bad = wrong(row)
    assert bad != row
    problems = check_table(table.replace(row, bad), _docs())
    assert any(expected in p for p in problems), problems


def test_the_checker_reports_a_missing_row_and_a_duplicate_label():
    table = (ROOT / TABLE).read_text()
    row = _first_row(table)
    label = LINK.findall(row.split("|")[1])[0][0]
    problems = check_table(table.replace(row + "\n", ""), _docs())
    assert any(f"{label}: numbered in" in p for p in problems), problems
    docs = _docs()
    docs["docs/losses.md"] += f"\n```math\nx \\tag{{{label}}}\n```\n"
    assert any(f"{label} is numbered twice" in p for p in check_table(table, docs))


@pytest.mark.parametrize("line, expected", [
    ("a $\\{x\\}$ b", "markdown eats the backslash"),
    ("a $\\lVert x\\rVert$ and $\\|x\\|$", "markdown eats the backslash"),
    ("a $f^*(t)$ b", "emphasis"),
    ("a $\\mathbb{E}_x$ and $y_{i}$", "can open emphasis"),
    ("| a | $\\vert x\\vert + |y|$ |", "inside a table"),
    ("a $a<b$ b", "HTML tag"),
    ("a $ x$ b", "space just inside"),
    ("a$x$ b", "right before the opening"),
    ("a $x$ b $y", "odd number"),
    ("the gradient `∂L/∂x` and ∂L/∂y", "outside math"),
    ("see issue 15", "issue number"),
])
def test_the_math_lint_catches_each_pitfall(tmp_path, monkeypatch, line, expected):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "x.md").write_text(line + "\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    problems = math_problems("docs/x.md")
    assert any(expected in p for p in problems), problems


def test_the_math_lint_passes_clean_markup(tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "x.md").write_text(
        "a $\\lVert g_i\\rVert$ b, `code ∂`, $x_{ij}^\\top$\n| $\\vert x\\vert$ | b |\n"
        "```math\n\\mathbb{E}_x \\{ \\| * \\tag{X1}\n```\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert math_problems("docs/x.md") == []


def test_every_equations_code_cites_it_in_its_docstring():
    problems = uncited((ROOT / TABLE).read_text())
    assert not problems, "\n".join(problems)


def test_every_citation_in_the_code_names_a_numbered_equation():
    sources = _sources()
    assert sum(len(LOOSE_CITATION.findall(t)) for t in sources.values()) >= 100
    problems = wrong_citations(sources, _docs())
    assert not problems, "\n".join(problems)


def test_the_citation_checks_report_a_missing_and_a_wrong_citation():
    table = (ROOT / TABLE).read_text()
    row = _first_row(table)
    label = LINK.findall(row.split("|")[1])[0][0]
    name = LINK.findall(row.split("|")[3])[0][0]

    def without_citation(n):
        text = cited_text(n)
        return CITATION.sub("", text) if n == name else text

    assert any(f"{label}: {name} does not cite" in p for p in uncited(table, without_citation))
    docs = _docs()
    for text, expected in [("(docs/losses.md, eq. ZZ9)", "cites ZZ9, not numbered in docs/losses.md"),
                           (f"(docs/losses.md, eq. {label})", f"cites {label}, not numbered"),
                           ("(docs/nosuch.md, eq. MM1)", "not numbered in docs/nosuch.md"),
                           ("(docs/losses.md, eq MM1)", "malformed citation"),
                           ("(docs/losses.md, eqs. MM1 MM2)", "malformed citation")]:
        problems = wrong_citations({"minigan/x.py": f'"""A loss {text}."""'}, docs)
        assert any(expected in p for p in problems), (text, problems)
    assert wrong_citations({"minigan/x.py": '"""(docs/losses.md, eqs. MM1, MM2; docs/derivations.md, eq. L1)"""'},
                           docs) == []
