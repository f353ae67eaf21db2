"""HCL expressions as `docker buildx bake` evaluates them, over python-hcl2's syntax tree.

Values are Python's: str, int or float (cty's numbers), bool, None (null), list, dict.
Templates convert what they interpolate as cty does (`true`, `2`, `1.5`); a string that
is one interpolation (`"${x}"`) is the value itself. The functions are bake's (go-cty's
stdlib and bake's own), each as cty defines it; one that would make a plan depend on
the machine or the moment (`timestamp`, `uuidv4`, `homedir`) is refused, as is anything
else not evaluated here: an error with the file and line, never a guess.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import math
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import hcl2
from lark import Token, Tree
from lark.exceptions import LarkError, UnexpectedInput

Node = Tree[Any]

__all__ = ["Function", "HclError", "Scope", "evaluate", "parse_hcl", "to_text"]


class HclError(Exception):
    """Bad HCL, or an expression bake would refuse: says what, and the line."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def parse_hcl(text: str) -> Node:
    """The syntax tree of an HCL file; HclError at the line of a syntax error."""
    try:
        return hcl2.parses_to_tree(text if text.endswith("\n") else text + "\n")
    except UnexpectedInput as exc:
        got = getattr(exc, "token", None) or getattr(exc, "char", "")
        raise HclError(f"HCL syntax error near {str(got)[:20]!r}", exc.line) from None
    except LarkError as exc:
        raise HclError(f"HCL syntax error: {exc}", 0) from None


@dataclass
class Function:
    """A `function` block of the file: parameters and the result expression."""

    params: list[str]
    variadic: str | None
    result: Any  # a syntax tree
    line: int


@dataclass
class Scope:
    variables: dict[str, Any]
    functions: dict[str, Function] = field(default_factory=dict)
    lazy: Callable[[str], Any] | None = None  # resolves a variable on first use

    def child(self, more: Mapping[str, Any]) -> Scope:
        return Scope({**self.variables, **more}, self.functions, self.lazy)


def _line(node: Any) -> int:
    if isinstance(node, Token):
        return node.line or 0
    meta = getattr(node, "meta", None)
    return getattr(meta, "line", 0) if meta is not None and not meta.empty else 0


def _kids(node: Node) -> list[Any]:
    """Children that mean something (no punctuation tokens, no newlines or comments)."""
    return [
        c
        for c in node.children
        if (isinstance(c, Tree) and c.data != "new_line_or_comment") or _named_token(c)
    ]


def _named_token(c: Any) -> bool:
    return isinstance(c, Token) and c.type in (
        "INT_LITERAL",
        "FLOAT_LITERAL",
        "NAME",
        "STRING_CHARS",
        "ESCAPED_INTERPOLATION",
        "ESCAPED_DIRECTIVE",
        "HEREDOC_TEMPLATE",
        "HEREDOC_TEMPLATE_TRIM",
    )


def to_text(value: Any, line: int = 0) -> str:
    """A value as a template interpolates it (cty's conversion to string)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if value is None:
        raise HclError("a null value cannot be interpolated into a string", line)
    raise HclError(f"a {_type(value)} cannot be interpolated into a string", line)


def _number(value: float) -> str:
    """As cty prints a number: plain decimals, never an exponent."""
    if value.is_integer():
        return str(int(value))
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    return "null"


def evaluate(node: Any, scope: Scope) -> Any:
    """The value of an expression node."""
    if isinstance(node, Token):
        if node.type == "INT_LITERAL":
            return int(node)
        if node.type == "FLOAT_LITERAL":
            return float(node)
        if node.type == "NAME":
            return _variable(str(node), scope, _line(node))
        raise HclError(f"unexpected {node.type}", _line(node))
    handler = _HANDLERS.get(node.data)
    if handler is None:
        raise HclError(
            f"ci-layers does not evaluate HCL {node.data.replace('_', ' ')}", _line(node)
        )
    return handler(node, scope)


def _variable(name: str, scope: Scope, line: int) -> Any:
    if name in scope.variables:
        return scope.variables[name]
    if scope.lazy is not None:
        found = scope.lazy(name)
        if found is not MISSING:
            return found
    if name in ("target", "group", "variable", "function"):
        raise HclError(
            f"'{name}.…' references another block: ci-layers does not evaluate them", line
        )
    close = difflib.get_close_matches(name, list(scope.variables), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise HclError(f"unknown variable '{name}'{hint}", line)


MISSING = object()  # what a Scope's `lazy` returns for a name it does not know


def _expr_term(node: Node, scope: Scope) -> Any:
    kids = _kids(node)
    if len(kids) != 1:
        raise HclError("unexpected expression", _line(node))
    return evaluate(kids[0], scope)


def _identifier(node: Node, scope: Scope) -> Any:
    return _variable(str(node.children[0]), scope, _line(node))


def _literal(node: Node, scope: Scope) -> Any:
    return {"true": True, "false": False, "null": None}[str(node.children[0])]


def _int(node: Node, scope: Scope) -> Any:
    return int(str(node.children[0]))


def _float(node: Node, scope: Scope) -> Any:
    return float(str(node.children[0]))


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def _unescape(text: str, line: int) -> str:
    def one(m: re.Match[str]) -> str:
        c = m.group(1)
        if c in _ESCAPES:
            return _ESCAPES[c]
        if c[0] in "uU":
            return chr(int(c[1:], 16))
        raise HclError(f"invalid escape \\{c} in a string", line)

    return re.sub(r"\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)", one, text)


def _string(node: Node, scope: Scope) -> Any:
    parts = [p for p in node.children if isinstance(p, Tree) and p.data == "string_part"]
    if len(parts) == 1 and _interpolation(parts[0]) is not None:
        return evaluate(_interpolation(parts[0]), scope)  # "${x}" is x itself
    return "".join(_part(p, scope) for p in parts)


def _interpolation(part: Node) -> Any:
    inner = part.children[0] if part.children else None
    if isinstance(inner, Tree) and inner.data == "interpolation":
        return next(c for c in inner.children if isinstance(c, Tree))
    return None


def _part(part: Node, scope: Scope) -> str:
    inner = part.children[0]
    line = _line(part)
    if isinstance(inner, Token):
        if inner.type == "STRING_CHARS":
            return _unescape(str(inner), line)
        if inner.type == "ESCAPED_INTERPOLATION":
            return str(inner)[1:]  # $${x} is the text ${x}
        if inner.type == "ESCAPED_DIRECTIVE":
            return str(inner)[1:]
    if isinstance(inner, Tree) and inner.data == "interpolation":
        expr = _interpolation(part)
        return to_text(evaluate(expr, scope), line)
    raise HclError("template directives (%{ … }) are not evaluated by ci-layers", line)


def _heredoc(node: Node, scope: Scope) -> Any:
    token = node.children[0]
    line = _line(token)
    text = str(token)
    trim = node.data == "heredoc_template_trim"
    first, _, rest = text.partition("\n")
    marker = first.removeprefix("<<-" if trim else "<<").strip()
    body = rest.rstrip("\n")
    body = body[: body.rstrip().rfind(marker)] if body.rstrip().endswith(marker) else body
    lines = body.split("\n")
    if lines and not lines[-1].strip():
        lines = lines[:-1]
    if trim:
        indent = min(
            (len(x) - len(x.lstrip(" \t")) for x in lines if x.strip()),
            default=0,
        )
        lines = [x[indent:] for x in lines]
    content = "\n".join(lines) + ("\n" if lines else "")
    return template(content, scope, line + 1)


def template(text: str, scope: Scope, line: int = 0) -> Any:
    """A template string outside the syntax tree (a heredoc, a JSON file's string):
    `${expr}` evaluated, `$${` kept as `${`; one interpolation alone is its value."""
    parts: list[str | tuple[Any, int]] = []
    i = 0
    while i < len(text):
        j = text.find("${", i)
        if j < 0:
            parts.append(_template_text(text[i:], line + text.count("\n", 0, i)))
            break
        at = line + text.count("\n", 0, j)
        if j > 0 and text[j - 1] == "$":
            parts.append(_template_text(text[i : j - 1], at) + "${")
            i = j + 2
            continue
        parts.append(_template_text(text[i:j], at))
        end = _closing(text, j + 2, at)
        parts.append((evaluate(_expression(text[j + 2 : end], at), scope), at))
        i = end + 1
    kept = [p for p in parts if p != ""]
    if len(kept) == 1 and isinstance(kept[0], tuple):
        return kept[0][0]
    return "".join(p if isinstance(p, str) else to_text(p[0], p[1]) for p in parts)


def _template_text(text: str, line: int) -> str:
    """Literal template text: `%%{` is `%{`; a `%{` directive is not evaluated here."""
    if re.search(r"(?<!%)%\{", text.replace("%%{", "")):
        raise HclError("template directives (%{ … }) are not evaluated by ci-layers", line)
    return text.replace("%%{", "%{")


def _closing(text: str, start: int, line: int) -> int:
    depth, i, quote = 0, start, False
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == '"':
                quote = False
        elif c == '"':
            quote = True
        elif c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise HclError("an interpolation ${ … } is not closed", line)


def _expression(text: str, line: int) -> Any:
    try:
        tree = hcl2.parses_to_tree(f"x = {text}\n")
    except (UnexpectedInput, LarkError):
        raise HclError(f"cannot parse the expression {text.strip()!r}", line) from None
    attribute = next(tree.find_data("attribute"))
    expr = [c for c in attribute.children if isinstance(c, Tree)][-1]
    _shift(expr, line - 1)
    return expr


def _shift(tree: Node, by: int) -> None:
    for sub in tree.iter_subtrees():
        if not sub.meta.empty:
            sub.meta.line += by


def _tuple(node: Node, scope: Scope) -> Any:
    return [evaluate(c, scope) for c in _kids(node)]


def _object(node: Node, scope: Scope) -> Any:
    out: dict[str, Any] = {}
    for elem in _kids(node):
        key_node, value_node = [c for c in elem.children if isinstance(c, Tree)]
        key_expr = _kids(key_node)[0]
        bare = _bare_name(key_expr)
        key = bare if bare is not None else to_text(evaluate(key_expr, scope), _line(elem))
        out[key] = evaluate(value_node, scope)
    return out


def _bare_name(node: Any) -> str | None:
    """An object key written as a bare name is that name, not a variable."""
    while isinstance(node, Tree) and node.data == "expr_term" and len(_kids(node)) == 1:
        if any(isinstance(c, Token) and c.type == "LPAR" for c in node.children):
            return None
        node = _kids(node)[0]
    if isinstance(node, Tree) and node.data == "identifier":
        return str(node.children[0])
    if isinstance(node, Tree) and node.data == "keyword":
        return str(node.children[0])
    return None


def _conditional(node: Node, scope: Scope) -> Any:
    cond, yes, no = [
        c for c in node.children if isinstance(c, Tree) and c.data != "new_line_or_comment"
    ]
    test = evaluate(cond, scope)
    if not isinstance(test, bool):
        raise HclError(f"a condition must be a bool, not a {_type(test)}", _line(node))
    return evaluate(yes if test else no, scope)


def _binary(node: Node, scope: Scope) -> Any:
    left_node, term = [
        c for c in node.children if isinstance(c, Tree) and c.data != "new_line_or_comment"
    ]
    op_node, right_node = [
        c for c in term.children if isinstance(c, Tree) and c.data != "new_line_or_comment"
    ]
    op = str(op_node.children[0])
    line = _line(node)
    left = evaluate(left_node, scope)
    if op == "&&" and left is False:
        return False  # cty evaluates both; the result is the same for bools
    if op == "||" and left is True:
        return True
    right = evaluate(right_node, scope)
    if op in ("&&", "||"):
        if not isinstance(left, bool) or not isinstance(right, bool):
            raise HclError(f"{op} needs bools", line)
        return left and right if op == "&&" else left or right
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    a, b = _num(left, line), _num(right, line)
    if op == "<":
        return a < b
    if op == ">":
        return a > b
    if op == "<=":
        return a <= b
    if op == ">=":
        return a >= b
    if op == "+":
        return _tidy(a + b)
    if op == "-":
        return _tidy(a - b)
    if op == "*":
        return _tidy(a * b)
    if op == "/":
        if b == 0:
            raise HclError("division by zero", line)
        return _tidy(a / b)
    if op == "%":
        if b == 0:
            raise HclError("modulo by zero", line)
        return _tidy(math.fmod(a, b))
    raise HclError(f"unknown operator {op}", line)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _tidy(value: float) -> int | float:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _num(value: Any, line: int) -> int | float:
    if isinstance(value, bool) or value is None:
        raise HclError(f"a number is required, not a {_type(value)}", line)
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", value.strip()):
        return _tidy(float(value))  # cty converts a numeric string
    raise HclError(f"a number is required, not {value!r}", line)


def _bad_num(value: Any, line: int) -> Any:
    raise HclError(f"a number is required, not {value!r}", line)


def _unary(node: Node, scope: Scope) -> Any:
    op = next(str(c) for c in node.children if isinstance(c, Token))
    value = evaluate(next(c for c in node.children if isinstance(c, Tree)), scope)
    if op == "!":
        if not isinstance(value, bool):
            raise HclError(f"! needs a bool, not a {_type(value)}", _line(node))
        return not value
    return _tidy(-_num(value, _line(node)))


def _index_term(node: Node, scope: Scope) -> Any:
    base_node, index = [c for c in node.children if isinstance(c, Tree)]
    return _index(evaluate(base_node, scope), index, scope)


def _index(value: Any, index: Node, scope: Scope) -> Any:
    line = _line(index)
    if index.data == "short_index":
        key: Any = int(
            next(str(c) for c in index.children if isinstance(c, Token) and c.type == "INT_LITERAL")
        )
    else:
        key = evaluate(next(c for c in index.children if isinstance(c, Tree)), scope)
    if isinstance(value, list):
        n = _num(key, line)
        if not isinstance(n, int) and not float(n).is_integer():
            raise HclError("a list index must be a whole number", line)
        if not 0 <= int(n) < len(value):
            raise HclError(f"index {int(n)} is out of range (the list has {len(value)})", line)
        return value[int(n)]
    if isinstance(value, dict):
        k = to_text(key, line)
        if k not in value:
            raise HclError(f"the map has no key {k!r}", line)
        return value[k]
    raise HclError(f"a {_type(value)} cannot be indexed", line)


def _get_attr(node: Node, scope: Scope) -> Any:
    base_node, attr = [c for c in node.children if isinstance(c, Tree)]
    return _attr(evaluate(base_node, scope), attr)


def _attr(value: Any, attr: Node) -> Any:
    name = str(next(c for c in attr.children if isinstance(c, Tree)).children[0])
    if not isinstance(value, dict) or name not in value:
        raise HclError(f"no attribute '{name}' on a {_type(value)}", _line(attr))
    return value[name]


def _splat(node: Node, scope: Scope) -> Any:
    base_node, splat = [c for c in node.children if isinstance(c, Tree)]
    value = evaluate(base_node, scope)
    items = value if isinstance(value, list) else ([] if value is None else [value])
    out = []
    for item in items:
        for step in [c for c in splat.children if isinstance(c, Tree)]:
            item = _attr(item, step) if step.data == "get_attr" else _index(item, step, scope)
        out.append(item)
    return out


def _for(node: Node, scope: Scope) -> Any:
    parts = [c for c in node.children if isinstance(c, Tree) and c.data != "new_line_or_comment"]
    intro, rest = parts[0], parts[1:]
    names = [
        str(c.children[0]) for c in intro.children if isinstance(c, Tree) and c.data == "identifier"
    ]
    source = evaluate(
        [
            c
            for c in intro.children
            if isinstance(c, Tree) and c.data != "identifier" and c.data != "new_line_or_comment"
        ][-1],
        scope,
    )
    cond = rest[-1] if rest and rest[-1].data == "for_cond" else None
    exprs = rest[:-1] if cond is not None else rest
    grouping = any(isinstance(c, Token) and c.type == "ELLIPSIS" for c in node.children)
    pairs = sorted(source.items()) if isinstance(source, dict) else list(enumerate(source or []))
    tuple_out: list[Any] = []
    object_out: dict[str, Any] = {}
    for k, v in pairs:
        bound = {names[0]: v} if len(names) == 1 else {names[0]: k, names[1]: v}
        inner = scope.child(bound)
        if cond is not None:
            test = evaluate(next(c for c in cond.children if isinstance(c, Tree)), inner)
            if not isinstance(test, bool):
                raise HclError("a for condition must be a bool", _line(cond))
            if not test:
                continue
        if node.data == "for_tuple_expr":
            tuple_out.append(evaluate(exprs[0], inner))
        else:
            key = to_text(evaluate(exprs[0], inner), _line(node))
            value = evaluate(exprs[1], inner)
            if grouping:
                object_out.setdefault(key, []).append(value)
            elif key in object_out:
                raise HclError(f"duplicate key {key!r} in a for expression", _line(node))
            else:
                object_out[key] = value
    return tuple_out if node.data == "for_tuple_expr" else object_out


def _call(node: Node, scope: Scope) -> Any:
    name_node = next(c for c in node.children if isinstance(c, Tree) and c.data == "identifier")
    name = str(name_node.children[0])
    line = _line(node)
    args_node = next(
        (c for c in node.children if isinstance(c, Tree) and c.data == "arguments"), None
    )
    arg_nodes = _kids(args_node) if args_node is not None else []
    expand = args_node is not None and any(
        isinstance(c, Token) and c.type == "ELLIPSIS" for c in args_node.children
    )
    if name in ("can", "try"):
        return _try(name, arg_nodes, scope, line)
    args = [evaluate(a, scope) for a in arg_nodes]
    if expand:
        if not args or not isinstance(args[-1], list):
            raise HclError(f"{name}(…...): the last argument must be a list to expand", line)
        args = [*args[:-1], *args[-1]]
    if name in scope.functions:
        try:
            return _user(name, scope.functions[name], args, scope, line)
        except RecursionError:
            raise HclError(f"{name}() calls itself without end", line) from None
    fn = FUNCTIONS.get(name)
    if fn is None:
        if name in _REFUSED:
            raise HclError(f"{name}() {_REFUSED[name]}", line)
        close = difflib.get_close_matches(name, [*FUNCTIONS, *scope.functions], n=1)
        hint = f"; did you mean {close[0]}()?" if close else ""
        raise HclError(f"unknown function {name}(){hint}", line)
    try:
        return fn(*args)
    except HclError as exc:
        raise HclError(f"{name}(): {exc.message}", line) from None
    except (TypeError, ValueError, KeyError, IndexError, re.error, ArithmeticError) as exc:
        raise HclError(f"{name}(): {exc or type(exc).__name__}", line) from None
    except StopIteration:
        raise HclError(f"{name}(): too few arguments for the format", line) from None
    except RecursionError:
        raise HclError(f"{name}() calls itself without end", line) from None


def _try(name: str, arg_nodes: list[Any], scope: Scope, line: int) -> Any:
    for a in arg_nodes:
        try:
            value = evaluate(a, scope)
        except HclError:
            if name == "can":
                return False
            continue
        return True if name == "can" else value
    if name == "can":
        raise HclError("can() takes one argument", line)
    raise HclError("try(): no argument could be evaluated", line)


def _user(name: str, fn: Function, args: list[Any], scope: Scope, line: int) -> Any:
    if len(args) < len(fn.params) or (fn.variadic is None and len(args) > len(fn.params)):
        raise HclError(f"{name}() takes {len(fn.params)} arguments, not {len(args)}", line)
    bound = dict(zip(fn.params, args, strict=False))
    if fn.variadic is not None:
        bound[fn.variadic] = args[len(fn.params) :]
    return evaluate(fn.result, Scope({**scope.variables, **bound}, scope.functions, scope.lazy))


_HANDLERS: dict[str, Callable[[Node, Scope], Any]] = {
    "expr_term": _expr_term,
    "identifier": _identifier,
    "literal_value": _literal,
    "int_lit": _int,
    "float_lit": _float,
    "string": _string,
    "heredoc_template": _heredoc,
    "heredoc_template_trim": _heredoc,
    "tuple": _tuple,
    "object": _object,
    "conditional": _conditional,
    "binary_op": _binary,
    "unary_op": _unary,
    "index_expr_term": _index_term,
    "get_attr_expr_term": _get_attr,
    "attr_splat_expr_term": _splat,
    "full_splat_expr_term": _splat,
    "for_tuple_expr": _for,
    "for_object_expr": _for,
    "function_call": _call,
}


# --- functions, as go-cty's stdlib and bake define them ----------------------------------


def _str(value: Any) -> str:
    return to_text(value)


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise HclError(f"a list is required, not a {_type(value)}")
    return value


def _replace(s: Any, old: Any, new: Any) -> str:
    text, old, new = _str(s), _str(old), _str(new)
    if len(old) > 1 and old.startswith("/") and old.endswith("/"):
        return re.sub(old[1:-1], _go_replacement(new), text)
    return text.replace(old, new)


def _go_replacement(new: str) -> str:
    """Go's `$1`/`${name}` in a replacement, as Python's `\\g<…>`."""
    return re.sub(
        r"\$(\{(\w+)\}|(\w+))",
        lambda m: f"\\g<{m.group(2) or m.group(3)}>",
        new.replace("\\", "\\\\"),
    )


def _join(sep: Any, *lists: Any) -> str:
    return _str(sep).join(_str(x) for lst in lists for x in _list(lst))


def _coalesce(*values: Any) -> Any:
    for v in values:
        if v is not None and v != "":
            return v
    raise HclError("no non-null, non-empty argument")


def _format(fmt: Any, *args: Any) -> str:
    fmt = _str(fmt)
    it = iter(args)

    def one(m: re.Match[str]) -> str:
        verb = m.group(2)
        if verb == "%":
            return "%"
        value = next(it)
        if verb == "s":
            return to_text(value)
        if verb == "d":
            return str(int(_num(value, 0)))
        if verb == "q":
            return json.dumps(to_text(value))
        if verb == "v":
            return to_text(value) if not isinstance(value, list | dict) else json.dumps(value)
        if verb in "fgeE":
            return ("%" + m.group(1) + verb) % _num(value, 0)
        if verb in "xX":
            return ("%" + m.group(1) + verb) % int(_num(value, 0))
        raise HclError(f"format verb %{verb} is not evaluated by ci-layers")

    return re.sub(r"%([-+# 0]*\d*(?:\.\d+)?)([a-zA-Z%])", one, fmt)


def _jsonencode(value: Any) -> str:
    """As Go's encoding/json writes cty's value: object keys sorted, `<`, `>` and `&`
    escaped, other characters as they are."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _sanitize(s: Any) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", _str(s))


def _merge(*maps: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in maps:
        if m is None:
            continue
        if not isinstance(m, dict):
            raise HclError("merge() takes maps")
        out.update(m)
    return out


def _flatten(value: Any) -> list[Any]:
    out: list[Any] = []
    for x in _list(value):
        out += _flatten(x) if isinstance(x, list) else [x]
    return out


def _range(*args: Any) -> list[int | float]:
    nums = [_num(a, 0) for a in args]
    start, stop, step = (
        (0, nums[0], 1)
        if len(nums) == 1
        else (nums[0], nums[1], nums[2] if len(nums) > 2 else (1 if nums[1] >= nums[0] else -1))
    )
    out = []
    x = start
    while (step > 0 and x < stop) or (step < 0 and x > stop):
        out.append(_tidy(x))
        x += step
    return out


def _lookup(m: Any, key: Any, *default: Any) -> Any:
    if isinstance(m, dict) and _str(key) in m:
        return m[_str(key)]
    if default:
        return default[0]
    raise HclError(f"no key {_str(key)!r} and no default")


def _substr(s: Any, offset: Any, length: Any) -> str:
    text, off, n = _str(s), int(_num(offset, 0)), int(_num(length, 0))
    if off < 0:
        off += len(text)
    return text[off:] if n < 0 else text[off : off + n]


def _regex(pattern: Any, s: Any) -> Any:
    m = re.search(_str(pattern), _str(s))
    if m is None:
        raise HclError("the pattern does not match")
    if m.re.groupindex:
        return m.groupdict()
    return list(m.groups()) if m.re.groups else m.group(0)


def _regexall(pattern: Any, s: Any) -> list[Any]:
    rx = re.compile(_str(pattern))
    out = []
    for m in rx.finditer(_str(s)):
        out.append(
            m.groupdict() if rx.groupindex else list(m.groups()) if rx.groups else m.group(0)
        )
    return out


def _title(s: Any) -> str:
    return re.sub(r"\b[a-z]", lambda m: m.group(0).upper(), _str(s))


def _index_of(lst: Any, value: Any) -> int:
    for i, x in enumerate(_list(lst)):
        if _equal(x, value):
            return i
    raise HclError("the value is not in the list")


def _element(lst: Any, i: Any) -> Any:
    items = _list(lst)
    if not items:
        raise HclError("element() of an empty list")
    return items[int(_num(i, 0)) % len(items)]


def _slice(lst: Any, start: Any, end: Any) -> list[Any]:
    return _list(lst)[int(_num(start, 0)) : int(_num(end, 0))]


def _length(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list | dict):
        return len(value)
    raise HclError(f"length() of a {_type(value)}")


def _distinct(lst: Any) -> list[Any]:
    out: list[Any] = []
    for x in _list(lst):
        if not any(_equal(x, y) for y in out):
            out.append(x)
    return out


def _int_of(value: Any) -> int:
    return int(_num(value, 0))


def _parseint(s: Any, base: Any) -> int:
    return int(_str(s), int(_num(base, 0)))


def _chunk(lst: Any, size: Any) -> list[list[Any]]:
    items, n = _list(lst), int(_num(size, 0))
    return [items[i : i + n] for i in range(0, len(items), n)] if n > 0 else [items]


def _indent(n: Any, s: Any) -> str:
    pad = " " * int(_num(n, 0))
    return _str(s).replace("\n", "\n" + pad)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "absolute": lambda n: _tidy(abs(_num(n, 0))),
    "add": lambda a, b: _tidy(_num(a, 0) + _num(b, 0)),
    "and": lambda *bs: all(bs),
    "base64decode": lambda s: base64.b64decode(_str(s)).decode(),
    "base64encode": lambda s: base64.b64encode(_str(s).encode()).decode(),
    "basename": lambda s: posixpath.basename(_str(s).rstrip("/")) or "/",
    "ceil": lambda n: math.ceil(_num(n, 0)),
    "chomp": lambda s: re.sub(r"(\r\n|\n|\r)+$", "", _str(s)),
    "chunklist": _chunk,
    "coalesce": _coalesce,
    "coalescelist": lambda *ls: next((x for x in ls if _list(x)), []),
    "compact": lambda lst: [x for x in _list(lst) if x not in (None, "")],
    "concat": lambda *ls: [x for lst in ls for x in _list(lst)],
    "contains": lambda lst, v: any(_equal(x, v) for x in _list(lst)),
    "dirname": lambda s: posixpath.dirname(_str(s)) or ".",
    "distinct": _distinct,
    "divide": lambda a, b: _tidy(_num(a, 0) / _num(b, 0)),
    "element": _element,
    "equal": lambda a, b: _equal(a, b),
    "flatten": _flatten,
    "floor": lambda n: math.floor(_num(n, 0)),
    "format": _format,
    "formatlist": lambda fmt, *ls: [
        _format(fmt, *row) for row in zip(*[_list(x) for x in ls], strict=True)
    ],
    "greaterthan": lambda a, b: _num(a, 0) > _num(b, 0),
    "greaterthanorequalto": lambda a, b: _num(a, 0) >= _num(b, 0),
    "hasindex": lambda c, k: (
        (0 <= int(_num(k, 0)) < len(c)) if isinstance(c, list) else _str(k) in (c or {})
    ),
    "indent": _indent,
    "index": lambda c, k: _element_at(c, k),
    "indexof": _index_of,
    "int": _int_of,
    "join": _join,
    "jsondecode": lambda s: json.loads(_str(s)),
    "jsonencode": lambda v: _jsonencode(v),
    "keys": lambda m: sorted(m) if isinstance(m, dict) else _bad_num(m, 0),
    "length": _length,
    "lessthan": lambda a, b: _num(a, 0) < _num(b, 0),
    "lessthanorequalto": lambda a, b: _num(a, 0) <= _num(b, 0),
    "log": lambda n, b: math.log(_num(n, 0), _num(b, 0)),
    "lookup": _lookup,
    "lower": lambda s: _str(s).lower(),
    "max": lambda *ns: _tidy(max(_num(n, 0) for n in ns)),
    "md5": lambda s: hashlib.md5(_str(s).encode()).hexdigest(),
    "merge": _merge,
    "min": lambda *ns: _tidy(min(_num(n, 0) for n in ns)),
    "modulo": lambda a, b: _tidy(math.fmod(_num(a, 0), _num(b, 0))),
    "multiply": lambda a, b: _tidy(_num(a, 0) * _num(b, 0)),
    "negate": lambda n: _tidy(-_num(n, 0)),
    "not": lambda b: not b,
    "notequal": lambda a, b: not _equal(a, b),
    "or": lambda *bs: any(bs),
    "parseint": _parseint,
    "pow": lambda a, b: _tidy(math.pow(_num(a, 0), _num(b, 0))),
    "range": _range,
    "regex": _regex,
    "regex_replace": lambda s, p, r: re.sub(_str(p), _go_replacement(_str(r)), _str(s)),
    "regexall": _regexall,
    "replace": _replace,
    "reverse": lambda s: _str(s)[::-1],
    "reverselist": lambda lst: _list(lst)[::-1],
    "sanitize": _sanitize,
    "sethaselement": lambda s, v: any(_equal(x, v) for x in _list(s)),
    "setintersection": lambda a, *bs: [
        x for x in _distinct(a) if all(any(_equal(x, y) for y in _list(b)) for b in bs)
    ],
    "setsubtract": lambda a, b: [
        x for x in _distinct(a) if not any(_equal(x, y) for y in _list(b))
    ],
    "setunion": lambda *ls: _distinct([x for lst in ls for x in _list(lst)]),
    "sha1": lambda s: hashlib.sha1(_str(s).encode()).hexdigest(),
    "sha256": lambda s: hashlib.sha256(_str(s).encode()).hexdigest(),
    "sha512": lambda s: hashlib.sha512(_str(s).encode()).hexdigest(),
    "signum": lambda n: (_num(n, 0) > 0) - (_num(n, 0) < 0),
    "slice": _slice,
    "sort": lambda lst: sorted(_str(x) for x in _list(lst)),
    "split": lambda sep, s: _str(s).split(_str(sep)),
    "strlen": lambda s: len(_str(s)),
    "substr": _substr,
    "subtract": lambda a, b: _tidy(_num(a, 0) - _num(b, 0)),
    "title": _title,
    "trim": lambda s, cut: _str(s).strip(_str(cut)),
    "trimprefix": lambda s, p: _str(s).removeprefix(_str(p)),
    "trimspace": lambda s: _str(s).strip(),
    "trimsuffix": lambda s, p: _str(s).removesuffix(_str(p)),
    "upper": lambda s: _str(s).upper(),
    "urlencode": lambda s: __import__("urllib.parse").parse.quote(_str(s), safe=""),
    "values": lambda m: [m[k] for k in sorted(m)] if isinstance(m, dict) else _bad_num(m, 0),
}

_REFUSED = {
    "timestamp": "changes every second: a key cannot depend on it",
    "uuidv4": "is random: a key cannot depend on it",
    "homedir": "is the machine's: a key cannot depend on it",
    "bcrypt": "is salted at random: a key cannot depend on it",
    "semvercmp": "is not evaluated by ci-layers",
    "rsadecrypt": "is not evaluated by ci-layers",
    "csvdecode": "is not evaluated by ci-layers",
    "formatdate": "is not evaluated by ci-layers",
    "formattimestamp": "is not evaluated by ci-layers",
    "unixtimestampparse": "is not evaluated by ci-layers",
    "timeadd": "is not evaluated by ci-layers",
    "cidrhost": "is not evaluated by ci-layers",
    "cidrnetmask": "is not evaluated by ci-layers",
    "cidrsubnet": "is not evaluated by ci-layers",
    "cidrsubnets": "is not evaluated by ci-layers",
    "convert": "is not evaluated by ci-layers",
    "setproduct": "is not evaluated by ci-layers",
    "setsymmetricdifference": "is not evaluated by ci-layers",
    "byteslen": "is not evaluated by ci-layers",
    "bytesslice": "is not evaluated by ci-layers",
    "uuidv5": "is not evaluated by ci-layers",
}


def _element_at(collection: Any, key: Any) -> Any:
    """cty's index(): the element of a list or map at a key."""
    if isinstance(collection, list):
        i = int(_num(key, 0))
        if not 0 <= i < len(collection):
            raise HclError(f"index {i} is out of range")
        return collection[i]
    if isinstance(collection, dict) and _str(key) in collection:
        return collection[_str(key)]
    raise HclError(f"no element {key!r}")
