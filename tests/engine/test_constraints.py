"""Constraints compiled with llguidance against the default model's real tokenizer: masks, completion, errors, cache
and the tool-call grammar."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import pytest
from tokenizers import Tokenizer

from inference_service.engine import constraints
from inference_service.engine.constraints import GrammarCompiler, Matcher
from inference_service.engine.errors import InvalidRequestError
from inference_service.engine.tool_calls import tool_call_constraint
from inference_service.engine.types import Constraint, ConstraintKind, Tool, ToolChoice, Tools
from inference_service.models.gguf_tokenizer import write_tokenizer_files

EOS = 2  # <|im_end|>


@pytest.fixture(scope="module")
def tokenizer_file(gguf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("smollm-tok")
    write_tokenizer_files(gguf.GGUFReader(gguf_path), out)
    return out / "tokenizer.json"


@pytest.fixture(scope="module")
def compiler(tokenizer_file: Path) -> GrammarCompiler:
    return GrammarCompiler(tokenizer_file, (EOS,), 49152)


@pytest.fixture(scope="module")
def hf(tokenizer_file: Path) -> Tokenizer:
    return Tokenizer.from_file(str(tokenizer_file))


def _walk(matcher: Matcher, hf: Tokenizer, text: str) -> int:
    """Feed `text`'s tokens while each is allowed; how many were."""
    for n, token in enumerate(hf.encode(text, add_special_tokens=False).ids):
        allowed = matcher.allowed()
        assert allowed.shape == (49152,)
        if not allowed[token]:
            return n
        matcher.consume(token)
    return -1  # all of them


def _accepts(compiler: GrammarCompiler, hf: Tokenizer, constraint: Constraint, text: str) -> bool:
    """`text` is a complete output: every token allowed, then the grammar is done or allows EOS."""
    m = compiler.compile(constraint).matcher()
    return _walk(m, hf, text) == -1 and (m.stopped or bool(m.allowed()[EOS]))


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 1, "maxItems": 2},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}


def test_json_schema_is_enforced_compactly(compiler: GrammarCompiler, hf: Tokenizer) -> None:
    c = Constraint(ConstraintKind.JSON_SCHEMA, json.dumps(SCHEMA))
    assert _accepts(compiler, hf, c, '{"name":"Ann","age":31,"tags":["a","b"]}')
    m = compiler.compile(c).matcher()
    _walk(m, hf, '{"name":"Ann","age":31,"tags":["a"]}')
    assert m.stopped  # the object is closed: only EOS may follow, and the engine ends the choice here
    for bad in (
        '{"name":"Ann","age":151,"tags":["a"]}',  # out of range
        '{"name":"Ann","age":31,"tags":[]}',  # too few items
        '{"name":"Ann","age":31,"tags":["c"]}',  # not in the enum
        '{"age":31,"name":"Ann","tags":["a"]}',  # properties in the schema's order
        '{"name": "Ann","age":31,"tags":["a"]}',  # compact by default: no whitespace runaway
        '{"name":"Ann","age":31,"tags":["a"],"x":1}',
    ):
        assert not _accepts(compiler, hf, c, bad), bad
    flexible = Constraint(ConstraintKind.JSON_SCHEMA, json.dumps(SCHEMA), whitespace_flexible=True)
    assert _accepts(compiler, hf, flexible, '{"name": "Ann", "age": 31, "tags": ["a"]}')


def test_eos_only_where_the_language_accepts(compiler: GrammarCompiler, hf: Tokenizer) -> None:
    m = compiler.compile(Constraint(ConstraintKind.REGEX, "ab|abcd")).matcher()
    assert not m.allowed()[EOS]
    _walk(m, hf, "ab")
    assert m.allowed()[EOS] and not m.stopped  # "ab" is complete, "abcd" may still follow
    _walk(m, hf, "cd")
    assert m.stopped
    choice = Constraint(ConstraintKind.CHOICE, json.dumps(["yes", "no", 'say "hi"']))
    assert _accepts(compiler, hf, choice, 'say "hi"') and not _accepts(compiler, hf, choice, "maybe")
    assert _accepts(compiler, hf, Constraint(ConstraintKind.JSON_OBJECT), '{"a":[1,{"b":null}]}')
    assert not _accepts(compiler, hf, Constraint(ConstraintKind.JSON_OBJECT), "[1]")
    lark = Constraint(ConstraintKind.LARK, 'start: "x" NUM\nNUM: /[0-9]+/')
    assert _accepts(compiler, hf, lark, "x42") and not _accepts(compiler, hf, lark, "y1")


@pytest.mark.parametrize(
    ("constraint", "message"),
    [
        (Constraint(ConstraintKind.REGEX, "(abc"), "unclosed group"),
        (Constraint(ConstraintKind.JSON_SCHEMA, '{"type": "nope"}'), "nope"),
        (Constraint(ConstraintKind.JSON_SCHEMA, '{"$ref": "#/missing"}'), "missing"),
        (Constraint(ConstraintKind.JSON_SCHEMA, "[1]"), "must be an object"),
        (Constraint(ConstraintKind.JSON_SCHEMA, "{"), "not valid JSON"),
        (Constraint(ConstraintKind.JSON_SCHEMA, '{"items":' * 5000 + "{}" + "}" * 5000), "nested too deeply"),
        (Constraint(ConstraintKind.JSON_SCHEMA, '{"items":' * 900 + "{}" + "}" * 900), "recursion limit"),
        (Constraint(ConstraintKind.LARK, "start: undefined_rule"), "undefined_rule"),
        (Constraint(ConstraintKind.CHOICE, "[]"), "non-empty list"),
        (Constraint(ConstraintKind.CHOICE, '["a", ""]'), "non-empty list"),
        (Constraint(ConstraintKind.REGEX, "a" * (constraints.MAX_SOURCE_BYTES + 1)), "longer than"),
    ],
)
def test_bad_constraints_are_named_errors(compiler: GrammarCompiler, constraint: Constraint, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message) as err:
        compiler.compile(constraint, param="response_format")
    assert err.value.param == "response_format"


def test_compiled_grammars_and_errors_are_cached(compiler: GrammarCompiler, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    compile_ = compiler._compile

    def counting(grammar: str) -> object:
        calls.append(grammar)
        return compile_(grammar)

    monkeypatch.setattr(compiler, "_compile", counting)
    for _ in range(3):
        compiler.compile(Constraint(ConstraintKind.REGEX, "[0-9]{3}-cached"))
        with pytest.raises(InvalidRequestError):
            compiler.compile(Constraint(ConstraintKind.REGEX, "(cached"))
    assert len(calls) == 2
    # each choice gets its own matcher: advancing one leaves the next at the start
    grammar = compiler.compile(Constraint(ConstraintKind.REGEX, "[0-9]{3}-cached"))
    first = grammar.matcher()
    first.consume(first.allowed().nonzero()[0][0])
    assert grammar.matcher().allowed().sum() > 0 and not grammar.matcher().stopped


WEATHER = Tool(
    "get_weather",
    "Weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False},
)
CLOCK = Tool("get_time", "", None)
CALL_W = '{"name":"get_weather","arguments":{"city":"Oslo"}}'
CALL_T = '{"name":"get_time","arguments":{}}'


@pytest.mark.parametrize(
    ("choice", "function", "parallel", "text", "ok"),
    [
        (ToolChoice.AUTO, "", True, "It is sunny in <b>Oslo</b>.", True),  # text only
        (ToolChoice.AUTO, "", True, f"Let me look. <tool_call>[{CALL_W},{CALL_T}]</tool_call>", True),
        (ToolChoice.AUTO, "", True, '<tool_call>[{"name":"get_mail","arguments":{}}]</tool_call>', False),
        (
            ToolChoice.AUTO,
            "",
            True,
            '<tool_call>[{"name":"get_weather","arguments":{"town":"Oslo"}}]</tool_call>',
            False,
        ),
        (ToolChoice.REQUIRED, "", True, "It is sunny.", False),
        (ToolChoice.REQUIRED, "", True, f"<tool_call>[{CALL_T}]</tool_call>", True),
        (ToolChoice.REQUIRED, "", False, f"<tool_call>[{CALL_W},{CALL_T}]</tool_call>", False),  # one call only
        (ToolChoice.FUNCTION, "get_weather", True, f"<tool_call>[{CALL_W}]</tool_call>", True),
        (ToolChoice.FUNCTION, "get_weather", True, f"<tool_call>[{CALL_T}]</tool_call>", False),
        (ToolChoice.FUNCTION, "get_weather", True, f"<tool_call>[{CALL_W},{CALL_W}]</tool_call>", False),
    ],
)
def test_tool_call_grammar(
    compiler: GrammarCompiler, hf: Tokenizer, choice: ToolChoice, function: str, parallel: bool, text: str, ok: bool
) -> None:
    constraint = tool_call_constraint(Tools((WEATHER, CLOCK), choice, function, parallel))
    assert _accepts(compiler, hf, constraint, text) is ok


def test_tool_schemas_with_local_references(compiler: GrammarCompiler, hf: Tokenizer) -> None:
    """Schemas as pydantic writes them ($defs, $ref, recursion) keep their references inside the tool grammar."""
    location = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    weather = {
        "$defs": {"Loc": location, "Unit": {"enum": ["celsius", "fahrenheit"], "type": "string"}},
        "type": "object",
        "properties": {"loc": {"$ref": "#/$defs/Loc"}, "unit": {"$ref": "#/$defs/Unit"}},
        "required": ["loc", "unit"],
        "additionalProperties": False,
    }
    tree = {
        "$defs": {
            "Tree": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/Tree"}}}}
        },
        "$ref": "#/$defs/Tree",
    }
    tools = Tools((Tool("weather", "", weather), Tool("tree", "", tree)), ToolChoice.REQUIRED)
    constraint = tool_call_constraint(tools)
    call_w = '{"name":"weather","arguments":{"loc":{"city":"Oslo"},"unit":"celsius"}}'
    assert _accepts(compiler, hf, constraint, f"<tool_call>[{call_w}]</tool_call>")
    assert _accepts(
        compiler, hf, constraint, '<tool_call>[{"name":"tree","arguments":{"kids":[{"kids":[]}]}}]</tool_call>'
    )
    assert not _accepts(compiler, hf, constraint, f"<tool_call>[{call_w.replace('celsius', 'kelvin')}]</tool_call>")
