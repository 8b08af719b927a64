"""Reading an LLM's reply, and prompt-building helpers that know nothing of the domain.

Shared by compose (a JSON block) and design (one Python file). A reply that does not hold what was
asked raises ReplyError; its message says what was wrong in words the next prompt can hand back to
the model ("2 python code blocks define a class; reply with exactly one file") and quotes the reply.

Fenced blocks: a line opening with ``` or ~~~ (3 or more, up to 3 spaces of indent), an optional
language word, and a closing line of the same character at least as long. CRLF and lone CR are read
as newlines. A block still open when the reply ends runs to the end and is flagged (`closed=False`):
a reply cut off at the token limit looks like that.

Which block is the file (`python_file`): blocks labelled python / py / python3 / unlabelled are the
candidates; a *whole file* is one that parses as Python and defines a top-level class.
  1. exactly one whole file among the candidates: that one (snippets beside it are ignored);
  2. several whole files: an error (which one is meant is a guess we do not make);
  3. none, but exactly one candidate: that one (it does not parse or defines no class; the caller's
     own checks then say so with the line, which helps a debug step more than "no file");
  4. no fenced block at all: the whole reply, when it is itself a whole file (flagged);
  otherwise an error.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

PYTHON_LANGS = ("python", "py", "python3")
IDEA_CHARS = 500  # a stated idea is cut to this many characters
QUOTE_CHARS = 300  # of a bad reply, quoted in an error

_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)[^`\n]*$")


class ReplyError(ValueError):
    """A reply that does not hold what was asked; the message says what to change and quotes the reply."""


@dataclass(frozen=True)
class Block:
    lang: str  # the fence's language word, lower case; "" when it names none
    body: str  # the text between the fences, newlines normalised, without the fence lines
    start: int  # offset of the opening fence line in the normalised reply
    end: int  # offset just past the closing fence line (the reply's length when not closed)
    closed: bool


@dataclass(frozen=True)
class CodeReply:
    source: str  # the file, as the model wrote it (newlines normalised, a final newline added)
    idea: str  # what the model says it tried (see stated_idea); "" when it says nothing
    notes: list[str] = field(default_factory=list)  # what was tolerated to read it, for the journal


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def code_blocks(text: str) -> list[Block]:
    """Every fenced block of a reply, in order (the reply's newlines normalised first)."""
    text = normalise_newlines(text)
    lines = text.split("\n")
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    blocks, i = [], 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if m is None:
            i += 1
            continue
        fence, lang = m[1], m[2].lower()
        close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        closed = j < len(lines)
        body = "\n".join(lines[i + 1:j])
        end = min(offsets[j] + len(lines[j]) + 1, len(text)) if closed else len(text)
        blocks.append(Block(lang, body, offsets[i], end, closed))
        i = j + 1
    return blocks


def python_file(text: str) -> CodeReply:
    """The one Python file a reply holds, by the rule in this module's docstring; ReplyError otherwise."""
    text = normalise_newlines(text)
    blocks = code_blocks(text)
    candidates = [b for b in blocks if b.lang in PYTHON_LANGS or b.lang == ""]
    files = [b for b in candidates if _whole_file(b.body)]
    notes: list[str] = []
    if len(files) == 1:
        chosen = files[0]
        if len(candidates) > 1:
            notes.append(f"{len(candidates) - 1} other python code block(s) ignored: not whole files")
    elif len(files) > 1:
        raise ReplyError(f"{len(files)} python code blocks each define a class; reply with exactly one file "
                         f"(one ```python block holding everything); reply ({len(text)} chars): {quote(text)}")
    elif len(candidates) == 1:
        chosen = candidates[0]
    elif candidates:
        raise ReplyError(f"{len(candidates)} python code blocks and none is a whole file (parses and defines a "
                         f"class); reply with exactly one ```python block holding the whole file; "
                         f"reply ({len(text)} chars): {quote(text)}")
    elif not blocks and _whole_file(text):
        return CodeReply(_with_newline(text.strip("\n")), "", ["no code fences: the whole reply read as the file"])
    else:
        others = sorted({b.lang for b in blocks})
        where = f" (only {', '.join(x or 'unlabelled' for x in others)} blocks)" if others else ""
        raise ReplyError(f"no python code block in the reply{where}; reply with exactly one ```python block "
                         f"holding the whole file; reply ({len(text)} chars): {quote(text)}")
    if not chosen.closed:
        problem = _syntax_error(chosen.body)
        if problem:
            raise ReplyError(f"the reply ends inside an unclosed code block that does not parse ({problem}): it "
                             f"was probably cut off at the token limit; write a shorter file; "
                             f"reply ({len(text)} chars): {quote(text)}")
        notes.append("the code block was not closed: read to the end of the reply")
    return CodeReply(_with_newline(chosen.body), stated_idea(text, before=chosen.start), notes)


def stated_idea(text: str, before: int | None = None, label: str = "Idea") -> str:
    """What a reply says it tried: its `Idea:` section if it has one, else its prose before offset
    `before` (the code), whitespace collapsed, at most IDEA_CHARS characters."""
    text = normalise_newlines(text)
    idea = section(text, label)
    if not idea:
        head = text if before is None else text[:before]
        prose, last = [], 0
        for b in code_blocks(head):  # prose only, no earlier snippets
            prose.append(head[last:b.start])
            last = b.end
        prose.append(head[last:])
        idea = " ".join(" ".join(prose).split())
    return truncate(idea, IDEA_CHARS)


def section(text: str, label: str) -> str:
    """The text after a `label:` line outside code blocks, up to the next blank line, fence or other
    `Word:` heading; markdown decoration (**, ##, -) around the label is allowed. "" when absent."""
    text = normalise_newlines(text)
    inside = set()
    for b in code_blocks(text):
        inside.update(range(text.count("\n", 0, b.start), text.count("\n", 0, max(b.start, b.end - 1)) + 1))
    head = re.compile(rf"^[\s>*#_-]*{re.escape(label)}[*_]*\s*:[*_]*\s*(.*)$", re.IGNORECASE)
    other = re.compile(r"^[\s>*#_-]*[A-Z][A-Za-z]*( [A-Za-z]+)?[*_]*:[*_]*(\s|$)")  # e.g. "Analysis:", "**Next step:**"
    lines = text.split("\n")
    for i, line in enumerate(lines):
        m = head.match(line) if i not in inside else None
        if m is None:
            continue
        out = [m[1]]
        for nxt in lines[i + 1:]:
            if not nxt.strip() or _OPEN.match(nxt) or other.match(nxt):
                break
            out.append(nxt)
        return " ".join(" ".join(out).split())
    return ""


# ---------------------------------------------------------------------------- prompt helpers


def truncate(text: str, n: int, keep: str = "head") -> str:
    """`text` in at most n characters (n of 40 or more): its head, its tail or both ends ("middle"), with
    a marker where it was cut saying how many characters were left out."""
    if len(text) <= n:
        return text
    kept = n
    for _ in range(3):  # the marker's length depends on the count it states
        note = f" [... {len(text) - kept} chars cut ...] "
        kept = max(0, n - len(note))
    if keep == "tail":
        return note.lstrip() + text[len(text) - kept:]
    if keep == "middle":
        return text[: kept // 2] + note + text[len(text) - (kept - kept // 2):]
    return text[:kept] + note.rstrip()


def quote(text: str, n: int = QUOTE_CHARS) -> str:
    """A reply quoted for an error message: stripped, both ends kept when long, as a JSON string."""
    return json.dumps(truncate(text.strip(), n, keep="middle"), ensure_ascii=False)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], max_cell: int = 160) -> str:
    """A markdown table; cells on one line (newlines and pipes escaped away), each at most max_cell chars."""
    def cell(v: Any) -> str:
        return truncate(" ".join(str(v).split()).replace("|", "/"), max_cell)

    out = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def _whole_file(source: str) -> bool:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(n, ast.ClassDef) for n in tree.body)


def _syntax_error(source: str) -> str:
    try:
        ast.parse(source)
    except SyntaxError as e:
        return f"SyntaxError: {e.msg} at line {e.lineno}"
    except ValueError as e:  # e.g. a NUL byte
        return f"ValueError: {e}"
    return ""


def _with_newline(source: str) -> str:
    return source if source.endswith("\n") else source + "\n"
