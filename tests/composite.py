"""Runs a composite action's steps as a GitHub runner would, for tests.

The runner's layout is kept: the caller's checkout is `$GITHUB_WORKSPACE`, the action
lies elsewhere (`…/_actions/<owner>/<name>/<ref>`, `github.action_path`), `run:` steps
start in the workspace. Expressions are evaluated with GitHub's rules for the operators
action.yml uses: `==`/`!=` (strings ignoring case, other types compared as numbers),
`!`, `&&`/`||` returning an operand, `format` with `{{` escapes, property names ignoring
case, a missing property null; no other functions. A `uses:`
step runs through a handler that does what that action's documentation says and fails
where it would: setup-python's `cache-dependency-path` globs only inside the workspace.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+)|(?P<op>==|!=|&&|\|\||[!(),])"
    r"|(?P<name>[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\.\*)*))"
)


class StepFailed(AssertionError):
    """A step failed as it would on a runner."""


def _truthy(value: Any) -> bool:
    if isinstance(value, float) and value != value:  # NaN
        return False
    return value not in (None, False, 0, "")


def _number(value: Any) -> float:
    """GitHub's coercion of an operand of another type: null 0, booleans 1/0, a string its
    number (empty 0, else NaN)."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0.0
        try:
            return float(int(text, 16)) if text.lower().startswith("0x") else float(text)
        except ValueError:
            return float("nan")
    return float("nan")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    if type(a) is type(b) and not isinstance(a, (dict, list)):
        return bool(a == b)
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return a is b
    return _number(a) == _number(b)  # NaN equals nothing


def _format(template: str, args: list[Any]) -> str:
    """format(): `{N}` is an argument, `{{` and `}}` are braces."""
    out = []
    for m in re.finditer(r"\{\{|\}\}|\{(\d+)\}|[^{}]+|[{}]", template):
        if m[0] in ("{{", "}}"):
            out.append(m[0][0])
        elif m[1] is not None:
            out.append(_text(args[int(m[1])]))
        else:
            out.append(m[0])
    return "".join(out)


def evaluate(expr: str, context: Mapping[str, Any]) -> Any:
    """One `${{ }}` expression's value."""
    tokens = []
    pos = 0
    while pos < len(expr.rstrip()):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot read expression {expr!r} at {pos}")
        tokens.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
    tokens.append(("end", ""))
    at = [0]

    def peek() -> tuple[str | None, str]:
        return tokens[at[0]]

    def take() -> tuple[str | None, str]:
        at[0] += 1
        return tokens[at[0] - 1]

    def lookup(name: str) -> Any:
        value: Any = context
        for part in name.split("."):  # property names ignore case
            if not isinstance(value, Mapping):
                return None
            value = next((v for k, v in value.items() if k.casefold() == part.casefold()), None)
        return value

    def primary() -> Any:
        kind, text = take()
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return int(text)
        if kind == "op" and text == "(":
            value = either()
            assert take() == ("op", ")")
            return value
        if kind == "op" and text == "!":
            return not _truthy(primary())
        if kind == "name" and text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        if kind == "name" and peek() == ("op", "("):
            take()
            args = [either()]
            while peek() == ("op", ","):
                take()
                args.append(either())
            assert take() == ("op", ")")
            if text != "format":
                raise ValueError(f"function {text} is not supported here")
            return _format(_text(args[0]), args[1:])
        if kind == "name":
            return lookup(text)
        raise ValueError(f"unexpected {text!r} in {expr!r}")

    def comparison() -> Any:
        value = primary()
        while peek() in (("op", "=="), ("op", "!=")):
            op = take()[1]
            same = _equal(value, primary())
            value = same if op == "==" else not same
        return value

    def both() -> Any:
        value = comparison()
        while peek() == ("op", "&&"):
            take()
            right = comparison()
            value = right if _truthy(value) else value
        return value

    def either() -> Any:
        value = both()
        while peek() == ("op", "||"):
            take()
            right = both()
            value = value if _truthy(value) else right
        return value

    value = either()
    if peek()[0] != "end":
        raise ValueError(f"trailing text in {expr!r}")
    return value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def render(text: str, context: Mapping[str, Any]) -> str:
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: _text(evaluate(m[1], context)), text)


Handler = Callable[["Runner", Mapping[str, str]], dict[str, str]]


@dataclass
class Runner:
    """One job's state: where things are, the environment, each step's outputs."""

    workspace: Path
    action_path: Path
    temp: Path
    env: dict[str, str]
    github: dict[str, Any]
    handlers: dict[str, Handler] = field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def run_action(self, inputs: Mapping[str, str]) -> dict[str, str]:
        """The action's outputs, after running its steps."""
        action = yaml.safe_load((self.action_path / "action.yml").read_text())
        given = dict(inputs.items())
        unknown = set(given) - set(action.get("inputs", {}))
        assert not unknown, f"inputs the action does not declare: {sorted(unknown)}"
        values: dict[str, Any] = {}
        context = self._context(values)
        for name, spec in action.get("inputs", {}).items():
            values[name] = given.get(name, render(str(spec.get("default", "")), context))
        for step in action["runs"]["steps"]:
            self._step(step, context)
        return {
            name: render(str(out["value"]), context)
            for name, out in action.get("outputs", {}).items()
        }

    def _context(self, inputs: dict[str, Any]) -> dict[str, Any]:
        github = {**self.github, "action_path": str(self.action_path)}
        github["workspace"] = str(self.workspace)
        runner = {"temp": str(self.temp), "os": "Linux", "arch": "X64"}
        return {"github": github, "runner": runner, "inputs": inputs, "steps": self.steps}

    def _step(self, step: Mapping[str, Any], context: dict[str, Any]) -> None:
        name = step.get("name") or step.get("uses") or step.get("run", "").split("\n")[0]
        condition = step.get("if")
        if condition is not None:
            cond = str(condition).strip()
            cond = cond[3:-2] if cond.startswith("${{") and cond.endswith("}}") else cond
            if not _truthy(evaluate(cond, context)):
                self.log.append(f"skipped: {name}")
                return
        env = {k: render(str(v), context) for k, v in (step.get("env") or {}).items()}
        if "uses" in step:
            uses = step["uses"]
            action = uses.split("@", 1)[0]
            assert action in self.handlers, f"no handler for {uses}"
            given = {k: render(str(v), context) for k, v in (step.get("with") or {}).items()}
            outputs = self.handlers[action](self, given)
        else:
            outputs = self._run(step, env)
        if "id" in step:
            self.steps[step["id"]] = {"outputs": outputs, "outcome": "success"}
        self.log.append(f"ran: {name}")

    def _run(self, step: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
        assert step.get("shell") == "bash", "a composite run step must name its shell"
        script = render(str(step["run"]), self._context({}))  # no expressions are left
        assert script == step["run"], "expressions inside a script"
        output = self.temp / f"output-{uuid.uuid4().hex}"
        output.write_text("")
        path = self.temp / f"step-{uuid.uuid4().hex}.sh"
        path.write_text(script)
        full = {**self.env, **env, "GITHUB_OUTPUT": str(output)}
        full["GITHUB_ACTION_PATH"] = str(self.action_path)
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)],
            cwd=self.workspace,
            env=full,
            capture_output=True,
            text=True,
            check=False,
        )
        self.log.append(done.stdout + done.stderr)
        if done.returncode != 0:
            raise StepFailed(f"step failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return parse_output(output.read_text())

    def glob_in_workspace(self, patterns: str) -> list[Path]:
        """What @actions/glob, which setup-python's cache uses, matches: only files under
        the workspace."""
        found: list[Path] = []
        for pattern in filter(None, (p.strip() for p in patterns.splitlines())):
            absolute = pattern if os.path.isabs(pattern) else str(self.workspace / pattern)
            for hit in glob.glob(absolute, recursive=True):
                if Path(hit).resolve().is_relative_to(self.workspace.resolve()):
                    found.append(Path(hit))
        return found


def parse_output(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if m := re.match(r"^([\w-]+)<<(.+)$", lines[i]):
            end = lines.index(m[2], i + 1)
            out[m[1]] = "\n".join(lines[i + 1 : end])
            i = end + 1
        elif "=" in lines[i]:
            k, _, v = lines[i].partition("=")
            out[k] = v
            i += 1
        else:
            i += 1
    return out
