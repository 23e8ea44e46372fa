"""Logic expressions: a small language of our own, parsed, type-checked and evaluated without ``eval``. Pure Python.

The text is cut into tokens, parsed by a Pratt (precedence-climbing) parser
into a tree of frozen nodes, checked for types against the points it names,
and evaluated by closures made from the tree once (one per node; a second, plainer set answers when every
input is good, the common case). Nothing in it can call Python code,
import, loop, reach an attribute or allocate without bound: the only
operations are the ones listed below, on floats and bools, and the size of a
tree is capped (:data:`MAX_SOURCE_CHARS`, :data:`MAX_NODES`, :data:`MAX_DEPTH`).

Syntax (docs/logic.md has the engineer's version)::

    {zone1_temp}              a point, by name, in braces (names: letters, digits, _ . -)
    21.5  1e3  .5  true false literals (every number is a float)
    - +                       unary minus and plus
    * / %                     % is the floored remainder: -7 % 3 == 2
    + -
    < <= > >= == !=           comparisons do not chain: write a < b and b < c
    not
    and
    or                        lowest precedence
    ( )                       grouping
    if(c, a, b)  min(a, ...)  max(a, ...)  avg(a, ...)  abs(x)  limit(x, low, high)
    good(x)  usable(x)  fallback(x, default)

Types are ``number`` and ``bool``, never mixed: arithmetic and ``< <= > >=``
take numbers, ``and or not`` and the condition of ``if`` take bools, ``==``
and ``!=`` take two of the same type, both branches of ``if`` and both
arguments of ``fallback`` have one type. A bool point is a ``bool``, every
other point a ``number``. Mistakes are refused when the expression is
compiled, with the column they are at.

Quality: each value carries one of ``good``, ``uncertain``, ``bad``. A
point's quality is its image quality, except that ``bad``, ``comm_failure``,
``stale``, ``out_of_service`` and a point with no value are all ``bad`` here.
The rule: **a result is as bad as the worst input it depends on**, where

* ``x and y`` is ``false`` as soon as one side is a usable (good or
  uncertain) ``false``, whatever the other side is; ``x or y`` likewise for a
  usable ``true`` (Kleene logic: the answer does not depend on the bad side);
* ``if(c, a, b)`` depends on ``c`` and on the branch it chooses only;
* ``good(x)`` (x is good), ``usable(x)`` (x is good or uncertain) are always
  good: they are how an expression looks at quality;
* ``fallback(x, d)`` is ``x`` if ``x`` is usable, else ``d`` (with ``d``'s quality);
* a division or remainder by zero, ``limit`` with its low bound above its high
  bound and a result that is not finite are ``bad`` too.

A bad result carries a short reason (``{zone1_temp} is comm_failure``); what a
rule does with it is its quality policy (:mod:`bms.logic.spec`).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

from bms.engine.image import GOOD, UNCERTAIN

#: the longest expression text
MAX_SOURCE_CHARS = 2000
#: the most nodes (numbers, points, operators, calls) in one expression
MAX_NODES = 300
#: the deepest nesting of parentheses, calls and operators
MAX_DEPTH = 40
#: the most arguments of one call
MAX_ARGS = 32
#: the most distinct points one expression reads
MAX_POINTS = 32


class Type(StrEnum):
    """The two types of the language."""

    NUMBER = "number"
    BOOL = "bool"


def point_type(data_type: str) -> Type:
    """The expression type of a point of ``data_type`` (``bool`` or any number type)."""
    return Type.BOOL if data_type == "bool" else Type.NUMBER


class Quality(IntEnum):
    """A value's quality inside an expression; a larger number is worse, so the worst is ``max``."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class Sample(NamedTuple):
    """An input value with its image quality (``bms.engine.image`` names: good, uncertain, bad, ...)."""

    value: Any
    quality: str = GOOD


@dataclass(frozen=True, slots=True)
class Result:
    """What an expression evaluated to: a value (None when bad), its quality and, when bad, why."""

    value: Any
    quality: Quality
    reason: str = ""

    @property
    def usable(self) -> bool:
        """Good or uncertain: the value can be used."""
        return self.quality is not Quality.BAD


class ExpressionError(ValueError):
    """An expression that cannot be compiled; ``position`` is the 0-based offset of the mistake."""

    def __init__(self, message: str, position: int, source: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.source = source

    @property
    def column(self) -> int:
        """The 1-based column of the mistake."""
        return self.position + 1

    def __str__(self) -> str:
        return f"column {self.column}: {self.message}"

    def excerpt(self) -> str:
        """The expression with a caret under the mistake (two lines)."""
        return f"{self.source}\n{' ' * self.position}^"


# ---- tree ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Num:
    value: float
    pos: int


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool
    pos: int


@dataclass(frozen=True, slots=True)
class Ref:
    """A point reference ``{name}``."""

    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Unary:
    op: str
    operand: Node
    pos: int


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: Node
    right: Node
    pos: int


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Node, ...]
    pos: int


Node = Num | Bool | Ref | Unary | Binary | Call

ARITHMETIC = ("+", "-", "*", "/", "%")
ORDERING = ("<", "<=", ">", ">=")
EQUALITY = ("==", "!=")
COMPARISONS = ORDERING + EQUALITY
LOGICAL = ("and", "or")

#: name -> (fewest arguments, most arguments, how the arguments are described in messages)
FUNCTIONS: dict[str, tuple[int, int, str]] = {
    "if": (3, 3, "(condition, then, else)"),
    "min": (1, MAX_ARGS, "(a, b, ...)"),
    "max": (1, MAX_ARGS, "(a, b, ...)"),
    "avg": (1, MAX_ARGS, "(a, b, ...)"),
    "abs": (1, 1, "(x)"),
    "limit": (3, 3, "(x, low, high)"),
    "good": (1, 1, "(x)"),
    "usable": (1, 1, "(x)"),
    "fallback": (2, 2, "(x, default)"),
}
KEYWORDS = ("and", "or", "not", "true", "false")

# ---- tokens --------------------------------------------------------------------------------------------------------

_DIGITS = frozenset("0123456789")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_NUMBER = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
POINT_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_OPERATORS = ("<=", ">=", "==", "!=", "<", ">", "+", "-", "*", "/", "%", "(", ")", ",")
_MISTAKES = {
    "&&": "there is no '&&': use 'and'",
    "||": "there is no '||': use 'or'",
    "**": "there is no power operator",
    "!": "there is no '!': use 'not' (or '!=' to compare)",
    "=": "'=' alone is not an operator: use '==' to compare",
    "&": "there is no '&': use 'and'",
    "|": "there is no '|': use 'or'",
    "^": "there is no power operator",
    "}": "'}' without a '{' before it",
    "$": "write a point as {name}, not $name",
    '"': "there are no strings in expressions",
    "'": "there are no strings in expressions",
}


class Token(NamedTuple):
    kind: str  # "num", "point", "name", "op", "end"
    text: str
    pos: int
    value: Any = None


def tokenize(source: str) -> list[Token]:
    """Cut ``source`` into tokens; raise :class:`ExpressionError` at the first character that fits none."""
    tokens: list[Token] = []
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char.isspace():
            i += 1
            continue
        if char in _DIGITS or (char == "." and i + 1 < n and source[i + 1] in _DIGITS):
            match = _NUMBER.match(source, i)
            assert match is not None  # a digit, or a dot and a digit, always starts a number
            text = match.group()
            end = match.end()
            if end < n and (source[end] in _LETTERS or source[end] in "_."):
                raise ExpressionError(
                    f"the number {text} runs into {source[end]!r}: put an operator between them", end, source
                )
            value = float(text)
            if not math.isfinite(value):
                raise ExpressionError(f"the number {text} is too large", i, source)
            tokens.append(Token("num", text, i, value))
            i = end
            continue
        if char == "{":
            close = source.find("}", i + 1)
            if close < 0:
                raise ExpressionError("'{' starts a point name that is never closed with '}'", i, source)
            name = source[i + 1 : close]
            if not name:
                raise ExpressionError("empty point name '{}'", i, source)
            if not POINT_NAME.fullmatch(name):
                raise ExpressionError(
                    f"the point name {name!r} may hold only letters, digits, '_', '.' and '-'", i + 1, source
                )
            tokens.append(Token("point", source[i : close + 1], i, name))
            i = close + 1
            continue
        if char in _LETTERS or char == "_":
            match = _IDENT.match(source, i)
            assert match is not None
            tokens.append(Token("name", match.group(), i))
            i = match.end()
            continue
        two = source[i : i + 2]
        if two in _MISTAKES:
            raise ExpressionError(_MISTAKES[two], i, source)
        if two in _OPERATORS:
            tokens.append(Token("op", two, i))
            i += 2
            continue
        if char in _OPERATORS:
            tokens.append(Token("op", char, i))
            i += 1
            continue
        if char in _MISTAKES:
            raise ExpressionError(_MISTAKES[char], i, source)
        raise ExpressionError(f"unexpected character {char!r}", i, source)
    tokens.append(Token("end", "", n))
    return tokens


def _shown(token: Token) -> str:
    if token.kind == "end":
        return "the end of the expression"
    if token.kind == "num":
        return f"the number {token.text}"
    if token.kind == "point":
        return f"the point {token.text}"
    return f"{token.text!r}"


# ---- parser --------------------------------------------------------------------------------------------------------

#: left binding power of the infix operators (higher binds tighter); all are left-associative
_INFIX = {
    "or": 10,
    "and": 20,
    **dict.fromkeys(COMPARISONS, 40),
    "+": 50,
    "-": 50,
    "*": 60,
    "/": 60,
    "%": 60,
}
_NOT_POWER = 30  # not a < b is not (a < b); not a and b is (not a) and b
_UNARY_POWER = 70  # -a * b is (-a) * b


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.index = 0
        self.depth = 0
        self.nodes = 0

    def error(self, message: str, position: int) -> ExpressionError:
        return ExpressionError(message, position, self.source)

    def peek(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def node(self, node: Node) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.error(f"the expression is too long: more than {MAX_NODES} parts", node.pos)
        return node

    def parse(self) -> Node:
        if not self.source.strip():
            raise self.error("the expression is empty", 0)
        root = self.expression(0)
        token = self.peek()
        if token.kind != "end":
            if token.text == ")":
                raise self.error("')' without a '(' before it", token.pos)
            if token.kind == "name" and token.text.lower() in LOGICAL:
                raise self.error(f"write {token.text.lower()!r} in lower case", token.pos)
            raise self.error(f"expected an operator or the end of the expression, found {_shown(token)}", token.pos)
        return root

    @staticmethod
    def infix(token: Token) -> str | None:
        if (token.kind == "op" and token.text in _INFIX) or (token.kind == "name" and token.text in LOGICAL):
            return token.text
        return None

    def expression(self, floor: int) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"the expression is nested too deeply (more than {MAX_DEPTH} levels)", self.peek().pos)
        left = self.prefix()
        compared = False
        while True:
            token = self.peek()
            op = self.infix(token)
            if op is None or _INFIX[op] <= floor:
                break
            if op in COMPARISONS:
                if compared:
                    raise self.error(
                        f"comparisons cannot be chained: write a {op} b and b {op} c, or use parentheses", token.pos
                    )
                compared = True
            self.take()
            right = self.expression(_INFIX[op])
            left = self.node(Binary(op, left, right, token.pos))
        self.depth -= 1
        return left

    def prefix(self) -> Node:
        token = self.take()
        if token.kind == "num":
            return self.node(Num(token.value, token.pos))
        if token.kind == "point":
            return self.node(Ref(token.value, token.pos))
        if token.kind == "op" and token.text in ("-", "+"):
            operand = self.expression(_UNARY_POWER)
            return self.node(Unary(token.text, operand, token.pos))
        if token.kind == "op" and token.text == "(":
            inner = self.expression(0)
            close = self.take()
            if close.text != ")" or close.kind != "op":
                raise self.error(
                    f"expected ')' to close the '(' at column {token.pos + 1}, found {_shown(close)}", close.pos
                )
            return inner
        if token.kind == "name":
            return self.name(token)
        if token.kind == "end":
            raise self.error("expected a value, found the end of the expression", token.pos)
        raise self.error(f"expected a value, found {_shown(token)}", token.pos)

    def name(self, token: Token) -> Node:
        word = token.text
        if word in ("true", "false"):
            return self.node(Bool(word == "true", token.pos))
        if word == "not":
            operand = self.expression(_NOT_POWER)
            return self.node(Unary("not", operand, token.pos))
        if word in LOGICAL:
            raise self.error(f"'{word}' needs a value on its left", token.pos)
        following = self.peek()
        opens = following.kind == "op" and following.text == "("
        if word not in FUNCTIONS:
            if word.lower() in KEYWORDS or word.lower() in FUNCTIONS:
                raise self.error(f"write {word.lower()!r} in lower case", token.pos)
            if opens:
                raise self.error(f"unknown function {word!r}; the functions are {', '.join(FUNCTIONS)}", token.pos)
            raise self.error(f"unknown name {word!r}: write a point as {{{word}}}", token.pos)
        if not opens:
            raise self.error(f"{word} is a function: write {word}{FUNCTIONS[word][2]}", token.pos)
        self.take()
        args: list[Node] = []
        if self.peek().kind == "op" and self.peek().text == ")":
            self.take()
        else:
            while True:
                if len(args) >= MAX_ARGS:
                    raise self.error(f"{word} takes at most {MAX_ARGS} arguments", self.peek().pos)
                args.append(self.expression(0))
                separator = self.take()
                if separator.kind == "op" and separator.text == ",":
                    continue
                if separator.kind == "op" and separator.text == ")":
                    break
                raise self.error(
                    f"expected ',' or ')' in the arguments of {word} (opened at column {following.pos + 1}), "
                    f"found {_shown(separator)}",
                    separator.pos,
                )
        fewest, most, shape = FUNCTIONS[word]
        if not fewest <= len(args) <= most:
            wanted = f"{fewest}" if fewest == most else f"at least {fewest}"
            plural = "" if fewest == 1 else "s"
            raise self.error(f"{word}{shape} takes {wanted} argument{plural}, not {len(args)}", token.pos)
        return self.node(Call(word, tuple(args), token.pos))


@dataclass(frozen=True, slots=True)
class Parsed:
    """A parsed, not yet type-checked, expression: its tree and the points it names (first appearance first)."""

    source: str
    root: Node
    references: tuple[tuple[str, int], ...]

    @property
    def points(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for name, _ in self.references))


def parse(source: str) -> Parsed:
    """Parse ``source`` (syntax only); raise :class:`ExpressionError` with the column of the first mistake."""
    if not isinstance(source, str):
        raise ExpressionError(f"an expression is text, not {type(source).__name__}", 0, "")
    if len(source) > MAX_SOURCE_CHARS:
        raise ExpressionError(f"the expression is longer than {MAX_SOURCE_CHARS} characters", MAX_SOURCE_CHARS, source)
    root = _Parser(source).parse()
    references: list[tuple[str, int]] = []
    _collect(root, references)
    distinct = list(dict.fromkeys(name for name, _ in references))
    if len(distinct) > MAX_POINTS:
        name = distinct[MAX_POINTS]
        position = next(pos for ref, pos in references if ref == name)
        raise ExpressionError(f"an expression reads at most {MAX_POINTS} points", position, source)
    return Parsed(source, root, tuple(references))


def _collect(node: Node, out: list[tuple[str, int]]) -> None:
    if isinstance(node, Ref):
        out.append((node.name, node.pos))
    elif isinstance(node, Unary):
        _collect(node.operand, out)
    elif isinstance(node, Binary):
        _collect(node.left, out)
        _collect(node.right, out)
    elif isinstance(node, Call):
        for arg in node.args:
            _collect(arg, out)


# ---- types ---------------------------------------------------------------------------------------------------------


class _Checker:
    def __init__(self, source: str, types: Mapping[str, Type]) -> None:
        self.source = source
        self.types = types

    def error(self, message: str, position: int) -> ExpressionError:
        return ExpressionError(message, position, self.source)

    def describe(self, node: Node, found: Type) -> str:
        """``{x} is a bool point``, ``true is a bool``, ``the result of '+' at column 7 is a number``."""
        kind = "bool" if found is Type.BOOL else "number"
        if isinstance(node, Ref):
            return f"{{{node.name}}} is a {kind} point"
        if isinstance(node, Bool):
            return f"{'true' if node.value else 'false'} is a {kind}"
        if isinstance(node, Num):
            return f"{node.value:g} is a {kind}"
        what = f"'{node.op}'" if isinstance(node, Unary | Binary) else node.name
        return f"the result of {what} at column {node.pos + 1} is a {kind}"

    def want(self, node: Node, wanted: Type, what: str) -> Type:
        found = self.check(node)
        if found is not wanted:
            raise self.error(f"{what} needs {_article(wanted)}; {self.describe(node, found)}", node.pos)
        return found

    def check(self, node: Node) -> Type:
        if isinstance(node, Num):
            return Type.NUMBER
        if isinstance(node, Bool):
            return Type.BOOL
        if isinstance(node, Ref):
            found = self.types.get(node.name)
            if found is None:
                raise self.error(f"unknown point {{{node.name}}}", node.pos)
            return Type(found)
        if isinstance(node, Unary):
            if node.op == "not":
                return self.want(node.operand, Type.BOOL, "'not'")
            return self.want(node.operand, Type.NUMBER, f"unary '{node.op}'")
        if isinstance(node, Binary):
            return self.binary(node)
        return self.call(node)

    def binary(self, node: Binary) -> Type:
        op = node.op
        if op in LOGICAL:
            self.want(node.left, Type.BOOL, f"'{op}'")
            self.want(node.right, Type.BOOL, f"'{op}'")
            return Type.BOOL
        if op in EQUALITY:
            left, right = self.check(node.left), self.check(node.right)
            if left is not right:
                raise self.error(
                    f"'{op}' compares two values of one type; {self.describe(node.left, left)} and "
                    f"{self.describe(node.right, right)}",
                    node.pos,
                )
            return Type.BOOL
        self.want(node.left, Type.NUMBER, f"'{op}'")
        self.want(node.right, Type.NUMBER, f"'{op}'")
        return Type.BOOL if op in ORDERING else Type.NUMBER

    def call(self, node: Call) -> Type:
        name, args = node.name, node.args
        if name == "if":
            self.want(args[0], Type.BOOL, "the condition of if")
            then, other = self.check(args[1]), self.check(args[2])
            if then is not other:
                raise self.error(
                    f"both branches of if must have one type; {self.describe(args[1], then)} and "
                    f"{self.describe(args[2], other)}",
                    args[2].pos,
                )
            return then
        if name in ("good", "usable"):
            self.check(args[0])
            return Type.BOOL
        if name == "fallback":
            value, default = self.check(args[0]), self.check(args[1])
            if value is not default:
                raise self.error(
                    f"the default of fallback must have the type of its value; {self.describe(args[0], value)} "
                    f"and {self.describe(args[1], default)}",
                    args[1].pos,
                )
            return value
        for arg in args:
            self.want(arg, Type.NUMBER, name)
        if name == "limit":
            low, high = _constant(args[1]), _constant(args[2])
            if low is not None and high is not None and low > high:
                raise self.error(f"limit: the low bound {low:g} is above the high bound {high:g}", args[1].pos)
        return Type.NUMBER


def _article(wanted: Type) -> str:
    return "numbers" if wanted is Type.NUMBER else "true/false values (bools)"


def _constant(node: Node) -> float | None:
    """The value of a literal number (or a negated one), else None."""
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Unary) and node.op in ("-", "+"):
        inner = _constant(node.operand)
        if inner is not None:
            return -inner if node.op == "-" else inner
    return None


# ---- evaluation ----------------------------------------------------------------------------------------------------

_GOOD, _UNCERTAIN, _BAD = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD
#: an evaluated value inside the evaluator: (value, quality, reason)
_Value = tuple[Any, Quality, str]


def input_quality(quality: str) -> Quality:
    """An image quality as an expression quality: good, uncertain, or bad for every other one."""
    if quality == GOOD:
        return _GOOD
    if quality == UNCERTAIN:
        return _UNCERTAIN
    return _BAD


class _Evaluator:
    __slots__ = ("cache", "inputs", "types")

    def __init__(self, inputs: Mapping[str, Any], types: Mapping[str, Type]) -> None:
        self.inputs = inputs
        self.types = types
        self.cache: dict[str, _Value] = {}

    def read(self, name: str) -> _Value:
        found = self.cache.get(name)
        if found is None:
            found = self.cache[name] = self._read(name)
        return found

    def _read(self, name: str) -> _Value:
        sample = self.inputs.get(name)
        if sample is None:
            return None, _BAD, f"{{{name}}} has no value"
        if isinstance(sample, tuple):
            value, quality = sample[0], sample[1]
        else:
            value, quality = getattr(sample, "value", None), getattr(sample, "quality", None)
        # the common case first (thousands of reads a second on the engine loop): a good int or float (not a bool)
        kind = type(value)
        if quality == GOOD and (kind is float or kind is int) and self.types[name] is Type.NUMBER:
            number = float(value)
            if math.isfinite(number):
                return number, _GOOD, ""
        level = input_quality(quality)
        if level is _BAD:
            return None, _BAD, f"{{{name}}} is {quality}"
        if value is None:
            return None, _BAD, f"{{{name}}} has no value"
        if self.types[name] is Type.BOOL:
            if isinstance(value, bool):
                return value, level, ""
            if isinstance(value, int | float) and math.isfinite(value):
                return value != 0, level, ""
            return None, _BAD, f"{{{name}}} is not true/false ({_short(value)})"
        if isinstance(value, bool):
            return float(value), level, ""
        if isinstance(value, int | float):
            number = float(value)
            if math.isfinite(number):
                return number, level, ""
        return None, _BAD, f"{{{name}}} is not a finite number ({_short(value)})"


# Each node becomes a closure once, when the expression is compiled: the engine evaluates thousands of expressions a
# second, and walking the tree with a type test per node cost twice as much (bench/logic.py). A closure takes the
# evaluator (the inputs and the reads already made) and answers (value, quality, reason).
_Fn = Callable[[_Evaluator], _Value]


def _worse(a: Quality, b: Quality) -> Quality:
    return a if a >= b else b


def _compile_node(node: Node) -> _Fn:
    if isinstance(node, Num | Bool):
        constant: _Value = (node.value, _GOOD, "")
        return lambda _evaluator: constant
    if isinstance(node, Ref):
        name = node.name
        return lambda evaluator: evaluator.read(name)
    if isinstance(node, Unary):
        return _compile_unary(node)
    if isinstance(node, Binary):
        return _compile_logical(node) if node.op in LOGICAL else _compile_binary(node)
    return _compile_call(node)


def _compile_unary(node: Unary) -> _Fn:
    operand, op = _compile_node(node.operand), node.op

    def unary(evaluator: _Evaluator) -> _Value:
        value = operand(evaluator)
        if value[1] is _BAD:
            return value
        if op == "not":
            return not value[0], value[1], ""
        return (-value[0] if op == "-" else value[0]), value[1], ""

    return unary


def _compile_logical(node: Binary) -> _Fn:
    left_fn, right_fn = _compile_node(node.left), _compile_node(node.right)
    decisive = node.op == "or"  # true decides an or, false decides an and

    def logical(evaluator: _Evaluator) -> _Value:
        left, right = left_fn(evaluator), right_fn(evaluator)
        deciding = [side for side in (left, right) if side[1] is not _BAD and side[0] is decisive]
        if deciding:
            return decisive, min(side[1] for side in deciding), ""
        for side in (left, right):
            if side[1] is _BAD:
                return side
        return (not decisive), _worse(left[1], right[1]), ""

    return logical


_OPERATIONS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "%": operator.mod,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _compile_binary(node: Binary) -> _Fn:
    """Arithmetic and comparisons: the left side's badness first, then the right's (both are always read)."""
    left_fn, right_fn, op, position = _compile_node(node.left), _compile_node(node.right), node.op, node.pos
    operation = _OPERATIONS[op]
    divides, compares = op in ("/", "%"), op in COMPARISONS

    def binary(evaluator: _Evaluator) -> _Value:
        left, right = left_fn(evaluator), right_fn(evaluator)
        if left[1] is _BAD:
            return left
        if right[1] is _BAD:
            return right
        quality = _worse(left[1], right[1])
        if compares:
            return operation(left[0], right[0]), quality, ""
        if divides and right[0] == 0:
            return None, _BAD, f"division by zero at column {position + 1}"
        return _finite(operation(left[0], right[0]), quality, position)

    return binary


def _compile_call(node: Call) -> _Fn:
    name, position = node.name, node.pos
    args = tuple(_compile_node(arg) for arg in node.args)
    if name == "if":
        condition_fn, then_fn, else_fn = args

        def choose(evaluator: _Evaluator) -> _Value:
            condition = condition_fn(evaluator)
            if condition[1] is _BAD:
                return condition
            chosen = (then_fn if condition[0] else else_fn)(evaluator)
            if chosen[1] is _BAD:
                return chosen
            return chosen[0], _worse(condition[1], chosen[1]), ""

        return choose
    if name == "good":
        (inner,) = args
        return lambda evaluator: (inner(evaluator)[1] is _GOOD, _GOOD, "")
    if name == "usable":
        (inner,) = args
        return lambda evaluator: (inner(evaluator)[1] is not _BAD, _GOOD, "")
    if name == "fallback":
        value_fn, default_fn = args

        def fallback(evaluator: _Evaluator) -> _Value:
            value = value_fn(evaluator)
            return value if value[1] is not _BAD else default_fn(evaluator)

        return fallback
    combine = _FUNCTIONS[name]

    def call(evaluator: _Evaluator) -> _Value:
        values = [arg(evaluator) for arg in args]
        quality = _GOOD
        for value in values:
            if value[1] is _BAD:
                return value
            if value[1] > quality:
                quality = value[1]
        return combine([value[0] for value in values], quality, position)

    return call


def _limit(numbers: list[Any], quality: Quality, position: int) -> _Value:
    low, high = numbers[1], numbers[2]
    if low > high:
        return None, _BAD, f"limit at column {position + 1}: the low bound {low:g} is above the high bound {high:g}"
    return min(max(numbers[0], low), high), quality, ""


#: the functions whose arguments are all read before they are combined: (numbers, worst quality, column) -> value
_FUNCTIONS: dict[str, Callable[[list[Any], Quality, int], _Value]] = {
    "min": lambda numbers, quality, _position: (min(numbers), quality, ""),
    "max": lambda numbers, quality, _position: (max(numbers), quality, ""),
    "abs": lambda numbers, quality, _position: (abs(numbers[0]), quality, ""),
    "avg": lambda numbers, quality, position: _average(numbers, quality, position),
    "limit": _limit,
}


def _average(numbers: list[Any], quality: Quality, position: int) -> _Value:
    try:
        total = math.fsum(numbers)
    except OverflowError:  # fsum raises where a plain sum would be infinite: avg(1e308, 1e308)
        total = math.inf
    return _finite(total / len(numbers), quality, position)


def _finite(result: float, quality: Quality, position: int) -> _Value:
    if math.isfinite(result):
        return result, quality, ""
    return None, _BAD, f"the result at column {position + 1} is not a finite number"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---- the fast path: every input good ---------------------------------------------------------------------------------
# Almost every evaluation in a building has every input good and finite. Then no quality needs carrying and no reason
# building: each node becomes a second closure that answers the plain value, or raises _Slow as soon as something is
# not that simple (an input not good, not a number of its type, a division by zero, a result that is not finite,
# limit's bounds reversed). Then the full evaluation above decides, so the two can only differ in speed (bench/logic.py:
# 5.8 -> 2.1 µs for if(max({a}, {b}, {c}) > 65535, 1, 0)). Still closures over the checked tree: nothing is eval'd.
_Plain = Callable[[Mapping[str, Any]], Any]


class _Slow(Exception):
    """The fast path cannot answer: the full evaluation decides."""


#: what ends the fast path (an int too large for a float, fsum's overflow: the full evaluation meets them too)
_NOT_FAST = (_Slow, ZeroDivisionError, OverflowError)


def _fast_read(name: str, kind: Type) -> _Plain:
    """A good input of the point's own type: a finite int or float (not a bool) for a number, a bool for a bool."""
    if kind is Type.BOOL:

        def read_bool(inputs: Mapping[str, Any]) -> Any:
            sample = inputs.get(name)
            try:
                value, quality = sample.value, sample.quality
            except AttributeError:
                value, quality = _pair(sample)
            if quality != GOOD or type(value) is not bool:
                raise _Slow
            return value

        return read_bool

    def read_number(inputs: Mapping[str, Any]) -> Any:
        sample = inputs.get(name)
        try:  # a PointState or Sample; inline, as this runs for every input of every rule run
            value, quality = sample.value, sample.quality
        except AttributeError:
            value, quality = _pair(sample)
        kind = type(value)
        if quality != GOOD or not (kind is float or kind is int):
            raise _Slow
        number = float(value)
        if number - number != 0.0:  # inf or nan
            raise _Slow
        return number

    return read_number


def _pair(sample: Any) -> tuple[Any, Any]:
    """(value, quality) of a plain ``(value, quality)`` tuple; anything else (None: no such point) is not fast."""
    if isinstance(sample, tuple):
        return sample[0], sample[1]
    raise _Slow


def _checked(result: float) -> float:
    if result - result != 0.0:
        raise _Slow
    return result


def _fast_node(node: Node, types: Mapping[str, Type]) -> _Plain:
    if isinstance(node, Num | Bool):
        constant = node.value
        return lambda _inputs: constant
    if isinstance(node, Ref):
        return _fast_read(node.name, types[node.name])
    if isinstance(node, Unary):
        operand = _fast_node(node.operand, types)
        if node.op == "not":
            return lambda inputs: not operand(inputs)
        if node.op == "-":
            return lambda inputs: -operand(inputs)
        return operand
    if isinstance(node, Binary):
        return _fast_binary(node, types)
    return _fast_call(node, types)


def _fast_binary(node: Binary, types: Mapping[str, Type]) -> _Plain:
    left, right = _fast_node(node.left, types), _fast_node(node.right, types)
    if node.op in LOGICAL:
        # both sides are read, as the full evaluation does; with both good a usable true (false) decides an or (and)
        if node.op == "or":
            return lambda inputs: (left(inputs) is True) | (right(inputs) is True)
        return lambda inputs: not ((left(inputs) is False) | (right(inputs) is False))
    operation = _OPERATIONS[node.op]
    if node.op in COMPARISONS:
        if isinstance(node.right, Num):
            constant = node.right.value
            return lambda inputs: operation(left(inputs), constant)
        return lambda inputs: operation(left(inputs), right(inputs))
    # arithmetic: a zero divisor raises ZeroDivisionError, a result out of a float's range is not finite
    if isinstance(node.right, Num):
        constant = node.right.value
        return lambda inputs: _checked(operation(left(inputs), constant))
    return lambda inputs: _checked(operation(left(inputs), right(inputs)))


def _fast_call(node: Call, types: Mapping[str, Type]) -> _Plain:
    args = tuple(_fast_node(arg, types) for arg in node.args)
    name = node.name
    if name == "if":
        condition, then, otherwise = args
        return lambda inputs: then(inputs) if condition(inputs) else otherwise(inputs)
    if name in ("good", "usable"):
        (inner,) = args

        def answered(inputs: Mapping[str, Any]) -> bool:
            inner(inputs)  # if it is not good, the full evaluation answers
            return True

        return answered
    if name == "fallback":
        return args[0]  # good, so usable
    if name == "abs":
        (inner,) = args
        return lambda inputs: abs(inner(inputs))
    if name == "limit":
        value, low, high = args

        def limited(inputs: Mapping[str, Any]) -> float:
            number, floor, ceiling = value(inputs), low(inputs), high(inputs)
            if floor > ceiling:
                raise _Slow
            return min(max(number, floor), ceiling)

        return limited
    if name == "avg":
        count = len(args)
        return lambda inputs: _checked(math.fsum([arg(inputs) for arg in args]) / count)
    combine = min if name == "min" else max
    if len(args) == 1:
        return args[0]
    return lambda inputs: combine([arg(inputs) for arg in args])


# ---- the compiled expression -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expression:
    """A parsed and type-checked expression, ready to evaluate; immutable, so specs can share it."""

    source: str
    root: Node
    type: Type
    #: the points it reads, first appearance first
    points: tuple[str, ...]
    #: their types, as they were when compiled (read-only; left out of the hash, which the tree already decides)
    types: Mapping[str, Type] = field(hash=False)

    #: the tree as closures (:func:`_compile_node`), made from ``root`` when the expression is compiled
    run: _Fn = field(default=None, compare=False, hash=False, repr=False)  # type: ignore[assignment]
    #: the tree as plain closures for inputs that are all good (:func:`_fast_node`)
    fast: _Plain = field(default=None, compare=False, hash=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.run is None:
            object.__setattr__(self, "run", _compile_node(self.root))
        if self.fast is None:
            object.__setattr__(self, "fast", _fast_node(self.root, self.types))

    def evaluate(self, inputs: Mapping[str, Any]) -> Result:
        """The value for ``inputs``: point name -> :class:`Sample`, ``(value, quality)`` or an object with
        ``.value`` and ``.quality`` (a ``PointState``). A point missing from ``inputs`` is bad."""
        return Result(*self.evaluate_plain(inputs))

    def evaluate_plain(self, inputs: Mapping[str, Any]) -> tuple[Any, Quality, str]:
        """:meth:`evaluate` as a plain ``(value, quality, reason)`` tuple: the rule runner's form (thousands a
        second on the engine loop, where a :class:`Result` per input was a measurable share)."""
        try:
            return self.fast(inputs), _GOOD, ""
        except _NOT_FAST:
            return self.run(_Evaluator(inputs, self.types))

    def evaluate_full(self, inputs: Mapping[str, Any]) -> tuple[Any, Quality, str]:
        """:meth:`evaluate_plain` without the fast path: what the fast path must always agree with (the tests)."""
        return self.run(_Evaluator(inputs, self.types))


def compile_expression(source: str | Parsed, types: Mapping[str, Type | str]) -> Expression:
    """Parse (unless already parsed) and type-check ``source``; ``types``: point name -> ``bool`` / ``number``.

    Raises :class:`ExpressionError` for syntax, unknown points (the first one) and type errors.
    """
    parsed = source if isinstance(source, Parsed) else parse(source)
    known = {name: Type(types[name]) for name in parsed.points if name in types}
    unknown = [(name, pos) for name, pos in parsed.references if name not in known]
    if unknown:
        names = list(dict.fromkeys(f"{{{name}}}" for name, _ in unknown))
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        raise ExpressionError(f"unknown point{'s' * (len(names) > 1)} {listed}", unknown[0][1], parsed.source)
    result = _Checker(parsed.source, known).check(parsed.root)
    return Expression(parsed.source, parsed.root, result, parsed.points, MappingProxyType(known))
