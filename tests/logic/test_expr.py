"""Logic expressions, pure: syntax and precedence, types, errors with their column, quality rules, limits."""

import math
import random

import pytest

from bms.logic.expr import (
    MAX_DEPTH,
    MAX_NODES,
    MAX_POINTS,
    MAX_SOURCE_CHARS,
    ExpressionError,
    Quality,
    Sample,
    Type,
    compile_expression,
    parse,
    point_type,
    tokenize,
)

TYPES = {
    "zone1_temp": Type.NUMBER,
    "zone1_sp": Type.NUMBER,
    "oat": Type.NUMBER,
    "ahu1_fan": Type.BOOL,
    "ahu-2.fan_cmd": Type.BOOL,
    "boiler.flow": Type.NUMBER,
}
GOOD = {
    "zone1_temp": Sample(22.0),
    "zone1_sp": Sample(21.0),
    "oat": Sample(-4.0),
    "ahu1_fan": Sample(True),
    "ahu-2.fan_cmd": Sample(False),
    "boiler.flow": Sample(3.5),
}


def value(source: str, inputs=None):
    result = compile_expression(source, TYPES).evaluate(GOOD if inputs is None else inputs)
    assert result.quality is not Quality.BAD, result.reason
    return result.value


def refused(source: str, match: str, column: int | None = None) -> ExpressionError:
    with pytest.raises(ExpressionError, match=match) as caught:
        compile_expression(source, TYPES)
    if column is not None:
        assert caught.value.column == column, str(caught.value)
        assert str(caught.value).startswith(f"column {column}: ")
    return caught.value


def with_input(name: str, sample) -> dict:
    return {**GOOD, name: sample}


# ---- syntax, precedence, values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("10 - 4 - 3", 3.0),  # left-associative
        ("2 * 3 % 4", 2.0),  # * and % bind alike, left to right: (2 * 3) % 4
        ("-2 * 3", -6.0),
        ("- -2", 2.0),
        ("-7 % 3", 2.0),  # the floored remainder
        ("7 / 2", 3.5),
        ("1e3 + .5", 1000.5),
        ("+4", 4.0),
        ("1 + 2 > 2", True),
        ("not 1 > 2", True),  # not binds looser than comparisons
        ("not false and false", False),  # ... and tighter than and
        ("true or false and false", True),  # and before or
        ("1 == 1 and 2 != 3", True),
        ("{zone1_temp} - {zone1_sp}", 1.0),
        ("{zone1_temp} >= {zone1_sp} + 1", True),
        ("{ahu1_fan} and not {ahu-2.fan_cmd}", True),
        ("{ahu1_fan} == true", True),
        ("{boiler.flow} * 2", 7.0),
        ("{ahu-2.fan_cmd} != {ahu1_fan}", True),
    ],
)
def test_values_and_precedence(source, expected):
    assert value(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("if({oat} < 5, 1, 0)", 1.0),
        ("if({ahu1_fan}, {zone1_sp}, 16)", 21.0),
        ("min(3, 1, 2)", 1.0),
        ("max({zone1_temp}, {zone1_sp}, 30)", 30.0),
        ("avg(1, 2, 3, 4)", 2.5),
        ("avg(7)", 7.0),
        ("abs({oat})", 4.0),
        ("limit(150, 0, 100)", 100.0),
        ("limit(-5, 0, 100)", 0.0),
        ("limit(42, 0, 100)", 42.0),
        ("limit({oat} * -10, 0, 100)", 40.0),
        ("min(max({zone1_temp}, 10), 20)", 20.0),
        ("if(good({zone1_temp}) and usable({oat}), 1, 2)", 1.0),
        ("fallback({zone1_temp}, 0)", 22.0),
    ],
)
def test_functions(source, expected):
    assert value(source) == expected


def test_the_type_of_an_expression_and_the_points_it_reads():
    expression = compile_expression("if({ahu1_fan}, {zone1_temp}, {zone1_temp} + {oat})", TYPES)
    assert expression.type is Type.NUMBER
    assert expression.points == ("ahu1_fan", "zone1_temp", "oat")
    assert compile_expression("{zone1_temp} > 1", TYPES).type is Type.BOOL
    assert parse("{a} + {b} + {a}").points == ("a", "b")
    assert (
        point_type("bool") is Type.BOOL and point_type("float32") is Type.NUMBER and point_type("uint16") is Type.NUMBER
    )


def test_inputs_may_be_point_states_tuples_or_samples_and_are_converted_by_type():
    class State:
        def __init__(self, value, quality):
            self.value, self.quality = value, quality

    expression = compile_expression("{zone1_temp} + 1", TYPES)
    assert expression.evaluate({"zone1_temp": State(2, "good")}).value == 3.0
    assert expression.evaluate({"zone1_temp": (2.5, "good")}).value == 3.5
    assert expression.evaluate({"zone1_temp": (True, "good")}).value == 2.0  # a bool read as a number: 1
    fan = compile_expression("not {ahu1_fan}", TYPES)
    assert fan.evaluate({"ahu1_fan": (1, "good")}).value is False  # a coil read as 0/1
    assert fan.evaluate({"ahu1_fan": (0, "good")}).value is True
    assert fan.evaluate({"ahu1_fan": ("on", "good")}).quality is Quality.BAD


# ---- errors with positions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "match", "column"),
    [
        ("", "the expression is empty", 1),
        ("1 +", "expected a value, found the end of the expression", 4),
        ("1 2", "expected an operator or the end of the expression, found the number 2", 3),
        ("(1 + 2", r"expected '\)' to close the '\(' at column 1, found the end", 7),
        ("1 + 2)", r"'\)' without a '\(' before it", 6),
        ("zone1_temp + 1", r"unknown name 'zone1_temp': write a point as \{zone1_temp\}", 1),
        ("mean(1, 2)", "unknown function 'mean'; the functions are if, min, max", 1),
        ("{zone1_temp", r"'\{' starts a point name that is never closed", 1),
        ("1 + {}", "empty point name", 5),
        ("{zone 1}", "the point name 'zone 1' may hold only letters", 2),
        ("3x", "the number 3 runs into 'x'", 2),
        ("1 = 1", "use '==' to compare", 3),
        ("true && false", "use 'and'", 6),
        ("true || false", "use 'or'", 6),
        ("!true", "use 'not'", 1),
        ("2 ** 3", "no power operator", 3),
        ("2 ^ 3", "no power operator", 3),
        ("$oat > 1", r"write a point as \{name\}", 1),
        ("'a'", "no strings", 1),
        ("1 # 2", "unexpected character '#'", 3),
        ("1 < 2 < 3", "comparisons cannot be chained", 7),
        ("min(1, 2", "expected ',' or '\\)' in the arguments of min", 9),
        ("max", r"max is a function: write max\(a, b, ...\)", 1),
        ("abs(1, 2)", r"abs\(x\) takes 1 argument, not 2", 1),
        ("limit(1, 2)", r"limit\(x, low, high\) takes 3 arguments, not 2", 1),
        ("if(true, 1)", "takes 3 arguments", 1),
        ("avg()", "takes at least 1 argument, not 0", 1),
        ("1 AND 2", "write 'and' in lower case", 3),
        ("and 1", "'and' needs a value on its left", 1),
        ("1e999", "too large", 1),
        ("1..2", "the number 1. runs into '.'", 3),
        ("x² + 1", "unexpected character '²'", 2),
        ("é + 1", "unexpected character 'é'", 1),
        ("٣ + 1", "unexpected character", 1),
    ],
)
def test_syntax_errors_say_what_and_where(source, match, column):
    error = refused(source, match, column)
    assert error.excerpt().splitlines()[1] == " " * (column - 1) + "^"


@pytest.mark.parametrize(
    ("source", "match", "column"),
    [
        ("{zone9_temp} + 1", r"unknown point \{zone9_temp\}", 1),
        ("{a} + {zone1_temp} + {b} + {a}", r"unknown points \{a\} and \{b\}", 1),
        ("{zone1_temp} + {ahu1_fan}", r"'\+' needs numbers; \{ahu1_fan\} is a bool point", 16),
        ("{ahu1_fan} + 1", r"'\+' needs numbers; \{ahu1_fan\} is a bool point", 1),
        ("{zone1_temp} and true", r"'and' needs true/false values \(bools\); \{zone1_temp\} is a number point", 1),
        ("not {oat}", r"'not' needs true/false values .*\{oat\} is a number point", 5),
        ("-{ahu1_fan}", r"unary '-' needs numbers", 2),
        ("{ahu1_fan} < 1", r"'<' needs numbers; \{ahu1_fan\} is a bool point", 1),
        (
            "{ahu1_fan} == 1",
            r"'==' compares two values of one type; \{ahu1_fan\} is a bool point and 1 is a number",
            12,
        ),
        ("if({oat}, 1, 2)", r"the condition of if needs true/false values .*\{oat\} is a number point", 4),
        ("if(true, 1, false)", "both branches of if must have one type; 1 is a number and false is a bool", 13),
        ("fallback({zone1_temp}, false)", "the default of fallback must have the type of its value", 24),
        ("min(1, true)", "min needs numbers; true is a bool", 8),
        ("abs(1 > 0)", r"abs needs numbers; the result of '>' at column 7 is a bool", 7),
        ("limit({oat}, 10, 5)", "limit: the low bound 10 is above the high bound 5", 14),
        ("limit({oat}, -1, -5)", "limit: the low bound -1 is above the high bound -5", 14),
    ],
)
def test_type_errors_and_unknown_points_say_what_and_where(source, match, column):
    refused(source, match, column)


def test_no_code_is_ever_run():
    for source in ("__import__('os').system('true')", "open('x')", "{a}.__class__", "(lambda: 1)()", "[1][0]"):
        with pytest.raises(ExpressionError):
            compile_expression(source, {"a": Type.NUMBER})
    kinds = {token.kind for token in tokenize("{a} + min(1, 2) and not true")}
    assert kinds == {"point", "op", "name", "num", "end"}


# ---- limits ------------------------------------------------------------------------------------------------------


def test_size_and_depth_are_limited():
    refused("1" + " " * MAX_SOURCE_CHARS, f"longer than {MAX_SOURCE_CHARS} characters")
    refused("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1), "nested too deeply")
    refused("-" * (MAX_DEPTH + 1) + "1", "nested too deeply")
    refused("+".join(["1"] * (MAX_NODES // 2 + 2)), f"too long: more than {MAX_NODES} parts")
    many = " + ".join(f"{{p{index}}}" for index in range(MAX_POINTS + 1))
    error = refused(many, f"reads at most {MAX_POINTS} points")
    assert error.position == many.index(f"{{p{MAX_POINTS}}}")
    refused("min(" + ", ".join(["1"] * 40) + ")", "at most 32 arguments")
    deep = "(" * (MAX_DEPTH - 2) + "1" + ")" * (MAX_DEPTH - 2)
    assert value(deep) == 1.0  # just within the depth


# ---- quality -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("quality", ["bad", "comm_failure", "stale", "out_of_service"])
def test_a_bad_input_makes_the_result_bad_with_a_reason(quality):
    result = compile_expression("{zone1_temp} - {zone1_sp}", TYPES).evaluate(with_input("zone1_temp", (20, quality)))
    assert result.quality is Quality.BAD and result.value is None and not result.usable
    assert result.reason == f"{{zone1_temp}} is {quality}"


def test_a_missing_point_or_value_is_bad():
    expression = compile_expression("{zone1_temp} + 1", TYPES)
    assert expression.evaluate({}).reason == "{zone1_temp} has no value"
    assert expression.evaluate({"zone1_temp": (None, "good")}).quality is Quality.BAD
    assert expression.evaluate({"zone1_temp": (math.nan, "good")}).reason.startswith("{zone1_temp} is not a finite")


def test_uncertain_propagates_as_uncertain():
    result = compile_expression("{zone1_temp} + 1", TYPES).evaluate(with_input("zone1_temp", (20, "uncertain")))
    assert (result.value, result.quality) == (21.0, Quality.UNCERTAIN)
    assert compile_expression("{zone1_sp} + 1", TYPES).evaluate(GOOD).quality is Quality.GOOD


def test_good_usable_and_fallback_look_at_quality():
    bad = with_input("zone1_temp", (20, "comm_failure"))
    uncertain = with_input("zone1_temp", (20, "uncertain"))
    for inputs, good, usable in ((GOOD, True, True), (uncertain, False, True), (bad, False, False)):
        assert value("good({zone1_temp})", inputs) is good
        assert value("usable({zone1_temp})", inputs) is usable
    assert value("fallback({zone1_temp}, 19.5)", bad) == 19.5
    assert value("fallback({zone1_temp}, 19.5)", uncertain) == 20.0  # uncertain is usable: no fallback
    assert value("if(usable({zone1_temp}), {zone1_temp}, {zone1_sp})", bad) == 21.0
    both_bad = {**bad, "zone1_sp": (0, "bad")}
    assert compile_expression("fallback({zone1_temp}, {zone1_sp})", TYPES).evaluate(both_bad).quality is Quality.BAD
    fine = compile_expression("fallback({zone1_temp}, {zone1_sp}) + 1", TYPES).evaluate(bad)
    assert (fine.value, fine.quality) == (22.0, Quality.GOOD)


def test_and_or_do_not_depend_on_a_bad_side_they_do_not_need():
    bad_fan = with_input("ahu1_fan", (True, "comm_failure"))
    assert value("{ahu-2.fan_cmd} and {ahu1_fan}", bad_fan) is False  # false and ? = false
    assert value("{ahu1_fan} and {ahu-2.fan_cmd}", bad_fan) is False
    assert value("not {ahu-2.fan_cmd} or {ahu1_fan}", bad_fan) is True  # true or ? = true
    for source in ("not {ahu-2.fan_cmd} and {ahu1_fan}", "{ahu-2.fan_cmd} or {ahu1_fan}"):
        result = compile_expression(source, TYPES).evaluate(bad_fan)
        assert result.quality is Quality.BAD and result.reason == "{ahu1_fan} is comm_failure"
    uncertain = with_input("ahu1_fan", (False, "uncertain"))
    result = compile_expression("{ahu1_fan} and {ahu-2.fan_cmd}", TYPES).evaluate(uncertain)
    assert (result.value, result.quality) == (False, Quality.GOOD)  # the good false decides


def test_if_depends_on_its_condition_and_the_chosen_branch_only():
    bad_oat = with_input("oat", (0, "stale"))
    assert value("if({ahu1_fan}, {zone1_sp}, {oat})", bad_oat) == 21.0
    assert compile_expression("if({ahu-2.fan_cmd}, {zone1_sp}, {oat})", TYPES).evaluate(bad_oat).reason == (
        "{oat} is stale"
    )
    bad_fan = with_input("ahu1_fan", (True, "bad"))
    assert compile_expression("if({ahu1_fan}, 1, 2)", TYPES).evaluate(bad_fan).quality is Quality.BAD
    uncertain_fan = with_input("ahu1_fan", (True, "uncertain"))
    assert compile_expression("if({ahu1_fan}, 1, 2)", TYPES).evaluate(uncertain_fan).quality is Quality.UNCERTAIN


def test_functions_over_a_bad_argument_are_bad():
    bad = with_input("oat", (0, "bad"))
    for source in ("min({zone1_temp}, {oat})", "max({oat}, 1)", "avg(1, {oat})", "abs({oat})", "limit(1, {oat}, 5)"):
        assert compile_expression(source, TYPES).evaluate(bad).reason == "{oat} is bad", source


def test_arithmetic_faults_are_bad_not_exceptions():
    zero = with_input("oat", (0.0, "good"))
    for source in ("1 / {oat}", "1 % {oat}"):
        result = compile_expression(source, TYPES).evaluate(zero)
        assert result.quality is Quality.BAD and result.reason == "division by zero at column 3"
    huge = compile_expression("1e308 * 10", TYPES).evaluate({})
    assert huge.quality is Quality.BAD and "not a finite number" in huge.reason
    crossed = compile_expression("limit(1, {zone1_temp}, {zone1_sp})", TYPES).evaluate(GOOD)
    assert crossed.quality is Quality.BAD and "low bound 22 is above the high bound 21" in crossed.reason
    assert value("fallback(1 / {oat}, -1)", zero) == -1.0  # a fault is bad like a bad input, so fallback catches it
    overflow = compile_expression("avg({oat}, {oat})", TYPES).evaluate(with_input("oat", (1e308, "good")))
    assert overflow.quality is Quality.BAD and "not a finite number" in overflow.reason  # fsum raised here once


def test_random_text_is_either_compiled_or_refused_and_evaluation_never_raises():
    pieces = [*"{}()+-*/%<>=!,. 0123456789eE", "and", "or", "not", "true", "false", "if", "min", "limit", "good"]
    pieces += ["fallback", "{zone1_temp}", "{ahu1_fan}", "{oat}", "x", "é", "\t"]
    inputs = {"zone1_temp": (0.0, "good"), "ahu1_fan": (True, "uncertain"), "oat": (1e308, "stale")}
    rnd = random.Random(12)
    compiled = 0
    for _ in range(5000):
        source = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 20)))
        try:
            expression = compile_expression(source, TYPES)
        except ExpressionError:
            continue
        compiled += 1
        assert expression.evaluate(inputs).quality in Quality
    assert compiled > 50


def _random_source(rnd: random.Random, kind: str, depth: int) -> str:
    """A well-typed expression of ``kind`` ("number" or "bool") over {a}, {b} (numbers) and {p} (a bool)."""
    if depth <= 0 or rnd.random() < 0.25:
        if kind == "number":
            return rnd.choice(["{a}", "{b}", "{a}", "0", "1", "2.5", "1e308", "65535", ".5"])
        return rnd.choice(["{p}", "true", "false", "{p}"])
    sub = depth - 1
    if kind == "number":
        form = rnd.randrange(8)
        if form == 0:
            return f"-({_random_source(rnd, 'number', sub)})"
        if form == 1:
            op = rnd.choice("+-*/%")
            return f"({_random_source(rnd, 'number', sub)} {op} {_random_source(rnd, 'number', sub)})"
        if form == 2:
            return (
                f"if({_random_source(rnd, 'bool', sub)}, {_random_source(rnd, 'number', sub)}, "
                f"{_random_source(rnd, 'number', sub)})"
            )
        if form == 3:
            args = ", ".join(_random_source(rnd, "number", sub) for _ in range(rnd.randint(1, 3)))
            return f"{rnd.choice(['min', 'max', 'avg'])}({args})"
        if form == 4:
            return f"abs({_random_source(rnd, 'number', sub)})"
        if form == 5:
            parts = ", ".join(_random_source(rnd, "number", sub) for _ in range(3))
            return f"limit({parts})"
        if form == 6:
            return f"fallback({_random_source(rnd, 'number', sub)}, {_random_source(rnd, 'number', sub)})"
        return f"+{_random_source(rnd, 'number', sub)}"
    form = rnd.randrange(6)
    if form == 0:
        return f"not ({_random_source(rnd, 'bool', sub)})"
    if form == 1:
        op = rnd.choice(["and", "or"])
        return f"({_random_source(rnd, 'bool', sub)} {op} {_random_source(rnd, 'bool', sub)})"
    if form == 2:
        op = rnd.choice(["<", "<=", ">", ">=", "==", "!="])
        return f"({_random_source(rnd, 'number', sub)} {op} {_random_source(rnd, 'number', sub)})"
    if form == 3:
        return f"({_random_source(rnd, 'bool', sub)} {rnd.choice(['==', '!='])} {_random_source(rnd, 'bool', sub)})"
    if form == 4:
        return f"{rnd.choice(['good', 'usable'])}({_random_source(rnd, rnd.choice(['number', 'bool']), sub)})"
    return (
        f"if({_random_source(rnd, 'bool', sub)}, {_random_source(rnd, 'bool', sub)}, "
        f"{_random_source(rnd, 'bool', sub)})"
    )


def _same(first, second) -> bool:
    (v1, q1, r1), (v2, q2, r2) = first, second
    both_nan = isinstance(v1, float) and isinstance(v2, float) and math.isnan(v1) and math.isnan(v2)
    return (both_nan or (type(v1) is type(v2) and v1 == v2)) and q1 is q2 and r1 == r2


def test_the_fast_path_for_good_inputs_answers_exactly_what_the_full_evaluation_does():
    """Random well-typed expressions on random inputs (good ones mostly; uncertain, stale, missing, a bool on a
    number point, zero, the edge of a float's range): the evaluation a rule gets is the full one's, always, and
    the fast path (all inputs good) answered most of them itself."""
    types = {"a": Type.NUMBER, "b": Type.NUMBER, "p": Type.BOOL}
    numbers = [0.0, 1, 2.5, -7, 1e308, -1e308, 65535, 3, 0.5]
    rnd = random.Random(2026)
    checked = fast = 0
    for _ in range(3000):
        source = _random_source(rnd, rnd.choice(["number", "bool"]), rnd.randint(1, 4))
        try:
            expression = compile_expression(source, types)
        except ExpressionError:
            continue  # refused at compile time (a constant division by zero, constant limit bounds reversed)
        for _ in range(4):
            inputs: dict = {}
            for name in ("a", "b"):
                if rnd.random() < 0.9:
                    value = rnd.choice(numbers) if rnd.random() < 0.9 else rnd.choice([True, math.inf, None, "x"])
                    inputs[name] = (value, "good" if rnd.random() < 0.85 else rnd.choice(["uncertain", "stale"]))
            if rnd.random() < 0.9:
                value = rnd.choice([True, False]) if rnd.random() < 0.9 else rnd.choice([1, 0.0, None])
                inputs["p"] = Sample(value, "good" if rnd.random() < 0.85 else "uncertain")
            expected = expression.evaluate_full(inputs)
            assert _same(expression.evaluate_plain(inputs), expected), (expression.source, inputs, expected)
            checked += 1
            try:
                expression.fast(inputs)
            except Exception:  # not all good, or a fault: the full evaluation answered
                continue
            fast += 1
    assert checked > 10000 and fast > checked // 3, (checked, fast)
