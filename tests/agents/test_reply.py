"""Reading a file out of an LLM reply (agents.llm.reply): fences, the one-file rule, the stated idea,
and the error messages that become a node's invalid reason."""

from __future__ import annotations

import ast

import pytest

from agents.llm.reply import (
    ReplyError,
    code_blocks,
    markdown_table,
    python_file,
    quote,
    section,
    stated_idea,
    truncate,
)

FILE = "import torch\n\n\nclass Mixer(torch.nn.Module):\n    def forward(self, x):\n        return x\n"
SNIPPET = "y = self.proj(x)  # the changed line\n"


def fenced(body: str, lang: str = "python", fence: str = "```") -> str:
    return f"{fence}{lang}\n{body}{fence}\n"


# ---------------------------------------------------------------------------- fences


def test_code_blocks_read_backticks_tildes_languages_and_offsets():
    text = "Intro\n" + fenced("a = 1\n", "Python") + "mid\n" + fenced("b\n", "", "~~~") + "````json {x}\n{}\n````\n"
    blocks = code_blocks(text)
    assert [(b.lang, b.body, b.closed) for b in blocks] == [("python", "a = 1", True), ("", "b", True),
                                                             ("json", "{}", True)]
    assert text[blocks[0].start:].startswith("```Python") and text[blocks[0].end:].startswith("mid")
    # a ``` line inside a ~~~ block is body, not a fence; inline ``` in prose is no fence at all
    nested = "Use ```python fences.\n~~~\n```python\nx\n```\n~~~\n"
    assert [b.body for b in code_blocks(nested)] == ["```python\nx\n```"]


def test_crlf_and_lone_cr_are_newlines():
    crlf = ("Idea: gate it.\r\n\r\n" + fenced(FILE)).replace("\n", "\r\n")
    got = python_file(crlf)
    assert got.source == FILE and got.idea == "gate it." and "\r" not in got.source
    assert python_file(fenced(FILE).replace("\n", "\r")).source == FILE


# ---------------------------------------------------------------------------- the one-file rule


@pytest.mark.parametrize("lang", ["python", "py", "python3", "PYTHON", ""])
def test_one_python_or_unlabelled_block_is_the_file(lang):
    got = python_file("Here is my design.\n\n" + fenced(FILE, lang) + "\nHope it helps.")
    assert got.source == FILE and got.notes == []


def test_snippets_beside_the_one_whole_file_are_ignored_and_noted():
    text = "The change:\n" + fenced(SNIPPET) + "The file:\n" + fenced(FILE) + fenced("pip install x\n", "bash")
    got = python_file(text)
    assert got.source == FILE and got.notes == ["1 other python code block(s) ignored: not whole files"]


def test_a_single_block_that_does_not_parse_is_still_returned_for_the_callers_syntax_check():
    broken = "class Mixer(:\n    pass\n"
    assert python_file(fenced(broken)).source == broken
    assert python_file(fenced(SNIPPET)).source == SNIPPET  # no class: the caller says "defines no primitive"


def test_a_reply_that_is_only_code_is_accepted_when_it_is_a_whole_file():
    got = python_file("\n\n" + FILE)
    assert got.source == FILE and got.notes == ["no code fences: the whole reply read as the file"]
    with pytest.raises(ReplyError, match="no python code block in the reply"):
        python_file("x = 1\n")  # parses, but defines no class: prose-like, not a file


def test_an_unterminated_final_fence_runs_to_the_end_and_is_flagged():
    got = python_file("Idea: keep it.\n```python\n" + FILE)
    assert got.source == FILE and got.notes == ["the code block was not closed: read to the end of the reply"]
    assert got.idea == "keep it."


@pytest.mark.parametrize("reply, reason", [
    ("", "no python code block in the reply; reply with exactly one ```python block"),
    ("I cannot help with that.", "no python code block in the reply;"),
    (fenced('{"a": 1}\n', "json") + fenced("ls\n", "bash"), "no python code block in the reply (only bash, json blocks)"),
    (fenced(FILE) + fenced(FILE.replace("Mixer", "Other")),
     "2 python code blocks each define a class; reply with exactly one file"),
    (fenced(SNIPPET) + fenced("z = (\n"), "2 python code blocks and none is a whole file"),
    ("```python\nclass Mixer:\n    def forward(self, x):\n        return (x",
     "the reply ends inside an unclosed code block that does not parse"),
])
def test_replies_without_one_file_say_what_to_change_and_quote_the_reply(reply, reason):
    with pytest.raises(ReplyError) as e:
        python_file(reply)
    assert isinstance(e.value, ValueError)  # the search journals operator errors as invalid proposals
    assert reason in str(e.value) and f"reply ({len(reply)} chars): " in str(e.value)
    assert quote(reply)[:20] in str(e.value)


def test_long_replies_are_quoted_with_both_ends():
    reply = "A" * 2000 + "Z" * 2000
    with pytest.raises(ReplyError) as e:
        python_file(reply)
    msg = str(e.value)
    assert "AAAA" in msg and "ZZZZ" in msg and "chars cut" in msg and len(msg) < 600


# ---------------------------------------------------------------------------- the stated idea


def test_idea_line_wins_over_prose_and_stops_at_a_blank_line_or_heading():
    text = ("Thinking about decays.\n\n**Idea:** a gated decay\nper head, learned.\n\nPlan: other things\n"
            + fenced(FILE))
    assert python_file(text).idea == "a gated decay per head, learned."
    assert section("## Analysis:\nlocal windows win\nAttention loses\nIdea: next", "analysis") == \
        "local windows win Attention loses"
    assert section("Analysis: short.\nIdea: next", "Analysis") == "short."


def test_without_an_idea_line_the_prose_before_the_code_is_the_idea_truncated():
    text = "I will   use\na decaying kernel.\n" + fenced(SNIPPET) + "Then more prose.\n" + fenced(FILE)
    assert python_file(text).idea == "I will use a decaying kernel. Then more prose."
    long = stated_idea("word " * 400)
    assert len(long) <= 500 and "chars cut" in long
    assert stated_idea(fenced(FILE)) == ""
    # an "Idea:" inside a code block is code, not the idea
    assert section(fenced("Idea: not this\n", ""), "Idea") == ""


# ---------------------------------------------------------------------------- prompt helpers


def test_truncate_keeps_head_tail_or_both_within_n_and_says_how_much_was_cut():
    text = "".join(chr(97 + i % 26) for i in range(1000))
    for keep in ("head", "tail", "middle"):
        out = truncate(text, 120, keep)
        cut = int(out.split("[... ")[1].split(" chars")[0])
        kept = out.replace(f"[... {cut} chars cut ...]", "").replace(" ", "")
        assert len(out) <= 120 and len(kept) + cut == 1000
    assert truncate(text, 120, "head").startswith("abc") and truncate(text, 120, "tail").endswith(text[-10:])
    assert truncate("short", 120) == "short"


def test_markdown_table_keeps_cells_on_one_line():
    table = markdown_table(["node", "idea"], [("#1", "gated\nlinear | attention"), ("#2", "x" * 500)], max_cell=60)
    lines = table.splitlines()
    assert lines[:3] == ["| node | idea |", "|---|---|", "| #1 | gated linear / attention |"]
    assert len(lines) == 4 and len(lines[3]) < 80


def test_the_file_read_is_what_the_model_wrote():
    src = python_file("Idea: x\n" + fenced(FILE)).source
    assert ast.dump(ast.parse(src)) == ast.dump(ast.parse(FILE))
