"""One Dockerfile: its instructions, the images it builds on, and the context it reads.

Parsed with dockerfile-parse (line continuations, comments), with heredocs (which it
does not know) folded back into their instruction. `ARG`s before the first `FROM` are
resolved with BuildKit's expansion rules and the configured build args; each stage's
`ARG`/`ENV` feed the expansion of its `COPY`/`ADD` sources.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from dockerfile_parse import DockerfileParser

from .shellexpand import ExpansionError, expand_word, expand_words

__all__ = ["ContextRead", "DockerfileError", "Instruction", "ParsedDockerfile", "parse_dockerfile"]

_HEREDOC = re.compile(r"<<(-?)(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
_URL = re.compile(r"^(https?://|git@|git://|ssh://)|\.git(#.*)?$")


class DockerfileError(ValueError):
    def __init__(self, message: str, line: int) -> None:
        self.line = line
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Instruction:
    line: int  # 1-based
    keyword: str  # upper case
    value: str  # continuation lines joined, as dockerfile-parse gives it
    heredocs: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return f"{self.keyword} {self.value}".strip()


@dataclass(frozen=True, slots=True)
class ContextRead:
    """Context paths (relative, maybe wildcards) one instruction reads."""

    line: int
    text: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class ParsedDockerfile:
    instructions: tuple[Instruction, ...]
    bases: tuple[str, ...]  # every image a stage is built on or copies from (not stages)
    final_base: str | None  # the image the last stage is built on, if not a stage
    reads: tuple[ContextRead, ...]
    notes: tuple[str, ...] = field(default=())  # non-reproducible inputs
    base_args: tuple[tuple[str, str], ...] = ()  # (image, global ARG its FROM is written with)


def _instructions(text: str) -> list[Instruction]:
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode("utf-8")))
    lines = text.splitlines()
    out: list[Instruction] = []
    skip_until = -1
    for item in parser.structure:
        if item["startline"] <= skip_until or item["instruction"] == "COMMENT":
            continue
        value = item["value"]
        bodies: list[str] = []
        cursor = item["endline"] + 1
        for strip_tabs, _quote, word in _HEREDOC.findall(value):
            body: list[str] = []
            while cursor < len(lines) and lines[cursor].strip() != word:
                line = lines[cursor]
                body.append(line.lstrip("\t") if strip_tabs else line)
                cursor += 1
            bodies.append("\n".join(body))
            skip_until = cursor
            cursor += 1
        out.append(
            Instruction(item["startline"] + 1, item["instruction"].upper(), value, tuple(bodies))
        )
    return out


def _flags(value: str) -> tuple[dict[str, list[str]], str]:
    """Leading --name=value flags of an instruction, and the rest."""
    flags: dict[str, list[str]] = {}
    rest = value.lstrip()
    while rest.startswith("--"):
        token, _, rest = rest.partition(" ")
        name, _, val = token[2:].partition("=")
        flags.setdefault(name, []).append(val)
        rest = rest.lstrip()
    return flags, rest


def _arguments(rest: str, env: Mapping[str, str], line: int) -> list[str]:
    stripped = rest.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
            if isinstance(items, list) and all(isinstance(x, str) for x in items):
                return items
        except json.JSONDecodeError:
            pass
    try:
        return expand_words(rest, env)
    except ExpansionError as exc:
        raise DockerfileError(str(exc), line) from None


def _key_value(value: str) -> tuple[str, str | None]:
    name, eq, default = value.strip().partition("=")
    return name.strip(), (default if eq else None)


def parse_dockerfile(text: str, *, build_args: Mapping[str, str]) -> ParsedDockerfile:
    """Instructions, bases and context reads; DockerfileError with the line on bad input."""
    instructions = _instructions(text)
    global_args: dict[str, str] = {}
    stages: list[str] = []  # stage names (lower case), in order
    bases: list[str] = []
    reads: list[ContextRead] = []
    notes: list[str] = []
    base_args: list[tuple[str, str]] = []
    final_base: str | None = None
    env: dict[str, str] = {}
    seen_from = False
    for ins in instructions:
        if ins.keyword == "ARG":
            for word in ins.value.split():
                name, default = _key_value(word)
                scope = env if seen_from else global_args
                if name in build_args:
                    scope[name] = build_args[name]
                elif default is not None:
                    try:
                        scope[name] = expand_word(default, {**global_args, **env})
                    except ExpansionError as exc:
                        raise DockerfileError(str(exc), ins.line) from None
                elif seen_from and name in global_args:
                    scope[name] = global_args[name]
        elif ins.keyword == "FROM":
            seen_from = True
            flags, rest = _flags(ins.value)
            words = rest.split()
            if not words:
                raise DockerfileError("FROM needs an image", ins.line)
            try:
                image = expand_word(words[0], global_args)
            except ExpansionError as exc:
                raise DockerfileError(str(exc), ins.line) from None
            if m := re.match(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)", words[0]):
                base_args.append((image, m.group(1)))
            if image.lower() in stages:
                final_base = None
            else:
                bases.append(image)
                final_base = image
            stages.append(words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else "")
            env = {}
        elif ins.keyword == "ENV":
            _env(ins, env)
        elif ins.keyword in ("COPY", "ADD"):
            flags, rest = _flags(ins.value)
            source = (flags.get("from") or [None])[-1]
            if source is not None:
                source = expand_word(source, {**global_args, **env})
                if source.lower() not in stages and not source.isdigit():
                    bases.append(source)
                continue
            args = _arguments(rest, {**global_args, **env}, ins.line)
            sources = [a for a in args[:-1] if not a.startswith("<<")]
            if ins.keyword == "ADD":
                remote = [s for s in sources if _URL.search(s)]
                notes.extend(f"line {ins.line}: ADD {s} is not reproducible" for s in remote)
                sources = [s for s in sources if s not in remote]
            if sources:
                reads.append(ContextRead(ins.line, ins.text, tuple(sources)))
        elif ins.keyword == "RUN":
            flags, _ = _flags(ins.value)
            for mount in flags.get("mount", []):
                opts = dict(p.partition("=")[::2] for p in mount.split(","))
                if "from" in opts:
                    ref = expand_word(opts["from"], {**global_args, **env})
                    if ref.lower() not in stages and not ref.isdigit():
                        bases.append(ref)
                elif opts.get("type") == "bind":
                    src = opts.get("source") or opts.get("src") or "."
                    reads.append(ContextRead(ins.line, ins.text, (src,)))
    if not seen_from:
        raise DockerfileError("no FROM instruction", 1)
    return ParsedDockerfile(
        instructions=tuple(instructions),
        bases=tuple(dict.fromkeys(bases)),
        final_base=final_base,
        reads=tuple(reads),
        notes=tuple(notes),
        base_args=tuple(base_args),
    )


def _env(ins: Instruction, env: dict[str, str]) -> None:
    """ENV a=b c=d, or the legacy ENV a b."""
    words = expand_words(ins.value, env)
    if words and "=" not in words[0]:
        env[words[0]] = " ".join(words[1:])
        return
    for word in words:
        name, _, value = word.partition("=")
        env[name] = value
