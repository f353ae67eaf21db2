"""One Dockerfile: its instructions, the images it builds on, and the context it reads.

Parsed with dockerfile-parse (line continuations, comments), with heredocs (which it
does not know) folded back into their instruction. `ARG`s before the first `FROM` are
resolved with BuildKit's expansion rules and the configured build args; each stage's
`ARG`/`ENV` feed the expansion of its `COPY`/`ADD` sources. An image built in the same
repository hands its `ENV` and its `ONBUILD` triggers to the stages built on it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from dockerfile_parse import DockerfileParser

from .dockerignore import DockerIgnore
from .gomatch import GLOB_CHARS, compile_segments
from .shellexpand import ExpansionError, expand_word, expand_words

__all__ = [
    "BaseImage",
    "ContextRead",
    "DockerfileError",
    "Instruction",
    "ParsedDockerfile",
    "parse_dockerfile",
    "valid_reference",
]

# A heredoc is a whole word `<<EOF`, `<<-EOF`, `<<"EOF"` of RUN, COPY or ADD (not `<<<`).
_HEREDOC = re.compile(r"(?:^|\s)<<(-?)(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2(?=\s|$)")
_HEREDOC_INSTRUCTIONS = ("RUN", "COPY", "ADD")
# A directive needs a value: `# escape=` alone is a comment for BuildKit (issue 12, 10).
_DIRECTIVE = re.compile(r"^\s*#\s*(syntax|escape|check)\s*=\s*(.+?)\s*$", re.IGNORECASE)
KNOWN = {
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
}
_WHOLE_ARG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-[^}]*)?\}")
# Remote sources of ADD. A local `lib.git` folder is not one: BuildKit takes a source for
# git only with a scheme or `git@` (a bare `github.com/...` is read as local too).
_URL = re.compile(r"^(https?://|git@|git://|ssh://)")
# BuildKit's automatic platform ARGs, defined before the first FROM without an ARG line.
# A GitHub-hosted runner builds linux/amd64; other platforms are set as build args.
PLATFORM_ARGS = {
    "TARGETPLATFORM": "linux/amd64",
    "TARGETOS": "linux",
    "TARGETARCH": "amd64",
    "TARGETVARIANT": "",
    "BUILDPLATFORM": "linux/amd64",
    "BUILDOS": "linux",
    "BUILDARCH": "amd64",
    "BUILDVARIANT": "",
}
_STAGE_NAME = re.compile(r"[a-z][a-z0-9._-]*")


# distribution/reference's grammar: [host[:port]/]path[:tag][@digest], path lower case
def valid_reference(ref: str) -> bool:
    """Whether Docker accepts `ref` as an image reference (lower-case repository path)."""
    return _REFERENCE.fullmatch(ref) is not None


_REFERENCE = re.compile(
    r"(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)


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
    exclude: tuple[str, ...] = ()  # COPY --exclude patterns


@dataclass(frozen=True, slots=True)
class BaseImage:
    """What an image built in the repository passes on to a stage built on it."""

    env: tuple[tuple[str, str], ...] = ()
    onbuild: tuple[str, ...] = ()  # ONBUILD triggers: run right after that stage's FROM


@dataclass(frozen=True)
class ParsedDockerfile:
    instructions: tuple[Instruction, ...]
    bases: tuple[str, ...]  # every image a stage is built on or copies from (not stages)
    final_base: str | None  # the image the last stage is built on, through its stages
    reads: tuple[ContextRead, ...]
    notes: tuple[str, ...] = field(default=())  # non-reproducible inputs
    base_args: tuple[tuple[str, str], ...] = ()  # (image, global ARG its FROM is written with)
    final_env: tuple[tuple[str, str], ...] = ()  # the ENV the built image carries
    final_onbuild: tuple[str, ...] = ()  # the ONBUILD triggers the built image carries
    warnings: tuple[tuple[int, str], ...] = ()  # (line, message)
    declared: frozenset[str] = frozenset()  # build args it can see: its ARGs, platform ARGs
    # (image, the platform a `FROM --platform=` asks it for, or "": the build's own)
    base_platforms: tuple[tuple[str, str], ...] = ()
    final_platform: str = ""  # the platform the built stage's image is asked for ("": own)


# Bytes that are not UTF-8 arrive as lone surrogates (surrogateescape), as file names do;
# dockerfile-parse only reads UTF-8, so they pass through it as private-use characters.
_TO_PRIVATE = {0xDC80 + i: 0xF780 + i for i in range(128)}
_FROM_PRIVATE = {v: k for k, v in _TO_PRIVATE.items()}
_ESCAPED = re.compile("[\udc80-\udcff]")


def _instructions(text: str) -> list[Instruction]:
    text = text.removeprefix("\ufeff")  # BuildKit skips a UTF-8 byte order mark
    if _ESCAPED.search(text):
        return [
            replace(
                i,
                value=i.value.translate(_FROM_PRIVATE),
                heredocs=tuple(h.translate(_FROM_PRIVATE) for h in i.heredocs),
            )
            for i in _instructions(text.translate(_TO_PRIVATE))
        ]
    # BuildKit splits lines on \n only (bufio.ScanLines, a \r before it dropped), as
    # dockerfile-parse counts them; str.splitlines also breaks at \f, \x85, \u2028 ...
    raw_lines = text.split("\n")
    lines = [line.removesuffix("\r") for line in raw_lines]
    out: list[Instruction] = []
    skip_until = -1
    for i, line in enumerate(lines):  # parser directives: only at the very top
        m = _DIRECTIVE.match(line)
        if not m:
            break
        out.append(Instruction(len(out) + 1, "#" + m.group(1).upper(), m.group(2)))
        if m.group(1).lower() == "check":
            # dockerfile-parse ends its directive scan at `# check=` and would miss an
            # `# escape=` after it: to it, this line is a directive it knows and ignores
            raw_lines[i] = "# syntax=ci-layers/check"
    parser = DockerfileParser(fileobj=io.BytesIO("\n".join(raw_lines).encode("utf-8")))
    for item in parser.structure:
        if item["startline"] <= skip_until or item["instruction"] == "COMMENT":
            continue
        keyword = item["instruction"].upper()
        value = item["value"]
        line_no = item["startline"] + 1
        if keyword not in KNOWN:
            raise DockerfileError(f"unknown instruction: {keyword}", line_no)
        bodies: list[str] = []
        cursor = item["endline"] + 1
        trigger = value.lstrip().partition(" ")[0].upper() if keyword == "ONBUILD" else ""
        heredocs = keyword in _HEREDOC_INSTRUCTIONS or trigger in _HEREDOC_INSTRUCTIONS
        words = _HEREDOC.findall(value) if heredocs else []
        for strip_tabs, _quote, word in words:
            body: list[str] = []
            while (
                cursor < len(lines)
                and (lines[cursor].lstrip("\t") if strip_tabs else lines[cursor]) != word
            ):
                line = lines[cursor]
                body.append(line.lstrip("\t") if strip_tabs else line)
                cursor += 1
            if cursor >= len(lines):
                raise DockerfileError(f"heredoc <<{word} is never closed", line_no)
            bodies.append("\n".join(body))
            skip_until = cursor
            cursor += 1
        if keyword in ("COPY", "ADD") and not bodies and not value.lstrip().startswith("["):
            # BuildKit builds a COPY from its words: spacing is no part of its cache key
            value = " ".join(_split_words(value))
        out.append(Instruction(line_no, keyword, value, tuple(bodies)))
    return out


def _flags(value: str) -> tuple[dict[str, list[str]], str]:
    """Leading --name=value flags of an instruction, and the rest."""
    flags: dict[str, list[str]] = {}
    rest = value.lstrip()
    while rest.startswith("--"):
        token, *more = rest.split(None, 1)  # any whitespace ends a flag, tabs too
        rest = more[0].lstrip() if more else ""
        name, _, val = token[2:].partition("=")
        flags.setdefault(name, []).append(val)
    return flags, rest


def _arguments(rest: str, env: Mapping[str, str], escape: str) -> list[str]:
    """COPY/ADD arguments: JSON form (each element expanded) or shell words."""
    stripped = rest.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError:
            items = None
        if isinstance(items, list) and all(isinstance(x, str) for x in items):
            return [expand_word(x, env, escape=escape) for x in items]
    return expand_words(rest, env, escape=escape)


def _count_arguments(rest: str) -> int:
    """How many arguments a COPY/ADD is written with, before any expansion."""
    stripped = rest.strip()
    if stripped.startswith("["):
        with contextlib.suppress(json.JSONDecodeError):
            items = json.loads(stripped)
            if isinstance(items, list):
                return len(items)
    return len(_split_words(rest))


def _split_words(value: str) -> list[str]:
    """Split on whitespace outside quotes, keeping the quotes (ARG a="x y" b=1)."""
    if "'" not in value and '"' not in value and "\\" not in value:
        return value.split()  # the same split where no quote or escape can join words
    words, word, quote, escaped = [], "", "", False
    for ch in value:
        if escaped:
            word, escaped = word + ch, False
            continue
        if ch == "\\":
            word, escaped = word + ch, True
            continue
        if quote:
            quote = "" if ch == quote else quote
            word += ch
        elif ch in "'\"":
            quote, word = ch, word + ch
        elif ch.isspace():
            if word:
                words.append(word)
            word = ""
        else:
            word += ch
    if word:
        words.append(word)
    return words


def parse_dockerfile(
    text: str,
    *,
    build_args: Mapping[str, str],
    base_image: Callable[[str], BaseImage | None] | None = None,
    target: str | None = None,
) -> ParsedDockerfile:
    """Instructions, bases and context reads; DockerfileError with the line on bad input.

    `base_image(reference)` gives what an image built on passes on, where it is known (an
    image built in the same repository): BuildKit expands later instructions with its ENV
    and runs its ONBUILD triggers, which read this build's context.

    Only the stages the built one (`target`, else the last) reaches through FROM,
    COPY --from and RUN --mount=from count: BuildKit skips the others.
    """
    instructions = _instructions(text)
    escapes = [i for i in instructions if i.keyword == "#ESCAPE"]
    if len(escapes) > 1:  # BuildKit: "only one escape parser directive can be used"
        raise DockerfileError("only one escape parser directive can be used", escapes[1].line)
    escape = escapes[0].value if escapes else "\\"
    if escape not in ("\\", "`"):
        raise DockerfileError(f"invalid escape token {escape!r}: use \\ or `", 1)
    state = _State(dict(build_args), escape=escape, base_image=base_image)
    state.global_args = {k: build_args.get(k, v) for k, v in PLATFORM_ARGS.items()}
    owner: list[int] = []  # the stage of each instruction (-1: before the first FROM)
    for ins in instructions:
        try:
            state.step(ins)
        except ExpansionError as exc:
            raise DockerfileError(str(exc), ins.line) from None
        owner.append(len(state.stages) - 1)
    if not state.stages:
        raise DockerfileError("no FROM instruction", 1)
    built = len(state.stages) - 1
    if target is not None:
        named = [i for i, name in enumerate(state.stages) if name == target.lower()]
        found = named[-1] if named else None  # BuildKit looks a target up by name only
        if found is None:
            raise DockerfileError(f"no stage named '{target}' to build (target)", 1)
        built = found
    keep = state.reached(built)
    bases = [b for b, o in state.bases if o in keep]
    kept = [(i, o) for i, o in zip(instructions, owner, strict=True) if o < 0 or o in keep]
    in_stages = {n for n, o in state.declared if o in keep}
    used = _global_args_used(kept, in_stages)
    declared = in_stages | used | set(PLATFORM_ARGS)
    return ParsedDockerfile(
        instructions=tuple(
            i
            for i, o in kept
            if o >= 0 or i.keyword != "ARG" or used & {n for n, _ in _arg_words(i.value)}
        ),
        bases=tuple(dict.fromkeys(bases)),
        final_base=state.roots[built],
        reads=tuple(r for r, o in state.reads if o in keep),
        notes=tuple(n for n, o in state.notes if o in keep),
        base_args=tuple(a for a in state.base_args if a[0] in bases),
        final_env=tuple(state.envs[built].items()),
        final_onbuild=tuple(state.onbuilds[built]),
        warnings=tuple(state.warnings),
        declared=frozenset(declared),
        base_platforms=tuple(
            dict.fromkeys((b, p) for b, p, o in state.base_platforms if o in keep)
        ),
        final_platform=state.root_platforms[built],
    )


def _arg_words(value: str) -> list[tuple[str, str]]:
    return [(w.partition("=")[0], w) for w in _split_words(value)]


def _global_args_used(kept: list[tuple[Instruction, int]], redeclared: set[str]) -> set[str]:
    """The ARGs the built stages use from before the first FROM (and those they declare
    again): in a FROM they start from, or in the default of another used one."""
    used = set(redeclared)
    texts = [i.value for i, o in kept if i.keyword == "FROM"]
    globals_ = [w for i, o in kept if o < 0 and i.keyword == "ARG" for w in _arg_words(i.value)]
    while True:
        more = {
            name
            for name, _word in globals_
            if name not in used and any(_mentions(t, name) for t in texts)
        }
        if not more:
            return used
        used |= more
        texts += [word for name, word in globals_ if name in more]


def _mentions(text: str, name: str) -> bool:
    return re.search(r"\$\{?" + re.escape(name) + r"(?![A-Za-z0-9_])", text) is not None


@dataclass
class _State:
    """What BuildKit knows while it reads a Dockerfile top to bottom."""

    build_args: dict[str, str]
    escape: str = "\\"  # the `# escape=` directive
    base_image: Callable[[str], BaseImage | None] | None = None
    persisted: dict[str, str] = field(default_factory=dict)  # this stage's ENV, for children
    onbuild: list[str] = field(default_factory=list)  # this stage's triggers, for children
    global_args: dict[str, str] = field(default_factory=dict)
    stages: list[str] = field(default_factory=list)  # names, lower case ("" if unnamed)
    env: dict[str, str] = field(default_factory=dict)  # this stage's ARGs and ENVs
    bases: list[tuple[str, int]] = field(default_factory=list)  # (image, stage using it)
    base_platforms: list[tuple[str, str, int]] = field(default_factory=list)  # + platform
    root_platforms: list[str] = field(default_factory=list)  # stage -> FROM --platform
    reads: list[tuple[ContextRead, int]] = field(default_factory=list)
    notes: list[tuple[str, int]] = field(default_factory=list)
    uses: dict[int, set[int]] = field(default_factory=dict)  # stage -> stages it needs
    roots: list[str | None] = field(default_factory=list)  # stage -> image it starts from
    envs: list[dict[str, str]] = field(default_factory=list)  # stage -> ENV it carries
    onbuilds: list[list[str]] = field(default_factory=list)  # stage -> its ONBUILD triggers
    base_args: list[tuple[str, str]] = field(default_factory=list)
    final_base: str | None = None
    warnings: list[tuple[int, str]] = field(default_factory=list)  # (line, message)
    declared: list[tuple[str, int]] = field(default_factory=list)  # (ARG name, its stage)

    def internal(self, ref: str) -> bool:
        return bool(ref) and (ref.lower() in self.stages or ref.isdigit())

    @property
    def current(self) -> int:
        return len(self.stages) - 1

    def stage_index(self, ref: str) -> int | None:
        """The stage `ref` names: its index, or the last stage so named so far."""
        if ref.isdigit():
            return int(ref) if int(ref) < len(self.stages) else None
        named = [i for i, name in enumerate(self.stages) if name == ref.lower()]
        return named[-1] if named else None

    def use(self, ref: str, line: int = 0) -> None:
        """This stage needs stage or image `ref` (nothing when it expanded to nothing)."""
        if not ref:
            return
        if self.internal(ref):
            index = self.stage_index(ref)
            if index is not None and index == self.current:  # BuildKit: a circular dependency
                raise DockerfileError(f"stage '{ref}' cannot use itself", line)
            if index is not None:
                self.uses.setdefault(self.current, set()).add(index)
        else:
            self.bases.append((ref, self.current))
            self.base_platforms.append((ref, "", self.current))

    def reached(self, stage: int) -> set[int]:
        seen, todo = {stage}, [stage]
        while todo:
            for dep in self.uses.get(todo.pop(), ()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    def step(self, ins: Instruction) -> None:
        handler = getattr(self, f"_{ins.keyword.lower()}", None)
        if handler is not None:
            handler(ins)

    def _arg(self, ins: Instruction) -> None:
        for word in _split_words(ins.value):
            name, eq, default = word.partition("=")
            self.declared.append((name, self.current))
            scope = self.env if self.stages else self.global_args
            if name in self.build_args:
                scope[name] = self.build_args[name]
            elif eq:  # in a stage, a global ARG not declared again is not visible
                seen = self.env if self.stages else self.global_args
                scope[name] = expand_word(default, seen, escape=self.escape)
            elif self.stages and name in self.global_args:
                scope[name] = self.global_args[name]  # ARG NAME re-declares a global one

    def _from(self, ins: Instruction) -> None:
        flags, rest = _flags(ins.value)
        for flag in flags:
            if flag != "platform":  # BuildKit knows FROM --platform only
                raise DockerfileError(f"FROM: unknown flag --{flag}", ins.line)
        words = rest.split()
        if not words:
            raise DockerfileError("FROM needs an image", ins.line)
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
            raise DockerfileError(
                f"FROM {rest.strip()}: write FROM <image> or FROM <image> AS <name>", ins.line
            )
        if len(words) == 3 and not _STAGE_NAME.fullmatch(words[2].lower()):
            raise DockerfileError(f"invalid stage name '{words[2]}'", ins.line)
        image = expand_word(words[0], self.global_args, escape=self.escape)
        if not image:
            raise DockerfileError(
                f"FROM {words[0]} expands to nothing: give the ARG a default, or set it in "
                "the rule's build_args as CI passes it",
                ins.line,
            )
        if not self.internal(image) and not _REFERENCE.fullmatch(image):
            # A warning: CI may pass the build arg that completes it. Set it in the spec.
            shown = image if image == words[0] else f"{words[0]} expands to '{image}', which"
            self.warnings.append(
                (ins.line, f"FROM {shown} is not a valid image reference (a build arg unset?)")
            )
        if m := _WHOLE_ARG.fullmatch(words[0]):
            self.base_args.append((image, m.group(1) or m.group(2)))
        known = None
        parent = self.stage_index(image) if self.internal(image) else None
        if parent is not None:
            self.final_base = self.roots[parent]
            self.persisted = dict(self.envs[parent])  # its ENV, not its ARGs
            # as if the stage were built into an image first: its triggers run here
            known = BaseImage(onbuild=tuple(self.onbuilds[parent]))
        else:
            self.final_base = image
            known = self.base_image(image) if self.base_image else None
            self.persisted = dict(known.env if known else ())
        self.onbuild = []  # a base's triggers run once, here, and are not passed on
        self.env = dict(self.persisted)
        name = words[2].lower() if len(words) >= 3 and words[1].lower() == "as" else ""
        if name and name in self.stages:
            raise DockerfileError(f"duplicate stage name '{words[2]}'", ins.line)
        asked = flags.get("platform", [""])[-1]
        asked = expand_word(asked, self.global_args, escape=self.escape) if asked else ""
        if parent is not None and not asked:
            asked = self.root_platforms[parent]  # a stage built on a stage: its platform
        self.stages.append(name)
        self.roots.append(self.final_base)
        self.root_platforms.append(asked)
        self.envs.append(self.persisted)
        self.onbuilds.append(self.onbuild)
        if parent is not None:
            self.uses.setdefault(self.current, set()).add(parent)
        else:
            self.bases.append((image, self.current))
            self.base_platforms.append((image, asked, self.current))
        for trigger in known.onbuild if known else ():
            self._trigger(ins, trigger)

    def _trigger(self, at: Instruction, trigger: str) -> None:
        """Run an ONBUILD trigger of the base image as if written right after `at`."""
        keyword, _, value = trigger.strip().partition(" ")
        before = len(self.reads)
        self.step(Instruction(at.line, keyword.upper(), value.strip()))
        text = f"{at.text} (its ONBUILD {trigger.strip()})"
        self.reads[before:] = [(replace(r, text=text), o) for r, o in self.reads[before:]]

    def _onbuild(self, ins: Instruction) -> None:
        keyword = ins.value.strip().partition(" ")[0].upper()
        if keyword in ("ONBUILD", "FROM", "MAINTAINER"):
            raise DockerfileError(f"ONBUILD cannot trigger {keyword}", ins.line)
        if keyword not in KNOWN:
            raise DockerfileError(f"ONBUILD of an unknown instruction: {keyword}", ins.line)
        self.onbuild.append(ins.value.strip())

    def _env(self, ins: Instruction) -> None:
        words = expand_words(ins.value, self.env, escape=self.escape)
        if words and "=" not in words[0]:  # the legacy ENV name value
            pairs = [(words[0], " ".join(words[1:]))]
        else:
            pairs = [(w.partition("=")[0], w.partition("=")[2]) for w in words]
        for name, value in pairs:
            self.env[name] = value
            self.persisted[name] = value

    def _copy(self, ins: Instruction) -> None:
        flags, rest = _flags(ins.value)
        if _count_arguments(rest) < 2:  # as written: a variable may expand to nothing
            raise DockerfileError(f"{ins.keyword} needs a source and a destination", ins.line)
        args = _arguments(rest, self.env, self.escape)
        source = flags["from"][-1] if "from" in flags else ""
        ref = expand_word(source, self.env, escape=self.escape) if source else ""
        if ref:  # an empty --from= is the build context, as BuildKit reads it (issue 12, 10b)
            if ref.isdigit() and int(ref) >= self.current:
                raise DockerfileError(f"--from={source} names no earlier stage", ins.line)
            self.use(ref, ins.line)
            return
        sources = [a for a in args[:-1] if not a.startswith("<<")]
        for src in sources:
            if GLOB_CHARS.search(src) and not _URL.search(src):
                try:
                    compile_segments(src.split("/"))
                except ValueError as exc:
                    raise DockerfileError(f"{ins.keyword} source: {exc}", ins.line) from None
        if ins.keyword == "ADD":
            remote = [s for s in sources if _URL.search(s)]
            self.notes += [
                (f"line {ins.line}: ADD {s} is not reproducible", self.current) for s in remote
            ]
            sources = [s for s in sources if s not in remote]
        if sources:
            exclude = tuple(
                expand_word(x, self.env, escape=self.escape) for x in flags.get("exclude", [])
            )
            try:
                DockerIgnore(list(exclude))
            except ValueError as exc:
                raise DockerfileError(f"--exclude: {exc}", ins.line) from None
            self.reads.append(
                (ContextRead(ins.line, ins.text, tuple(sources), exclude), self.current)
            )

    _add = _copy

    def _run(self, ins: Instruction) -> None:
        flags, _ = _flags(ins.value)
        for mount in flags.get("mount", []):
            # BuildKit reads a mount as CSV, keys in any case, the type too
            fields = next(csv.reader([mount]), [])
            opts = {k.lower(): v for k, _, v in (f.partition("=") for f in fields)}
            if "type" in opts:
                opts["type"] = opts["type"].lower()
            mounted = (
                expand_word(opts["from"], self.env, escape=self.escape) if opts.get("from") else ""
            )
            if mounted:  # an empty from= mounts the build context, as BuildKit does
                self.use(mounted, ins.line)
            elif opts.get("type", "bind") == "bind":  # a mount without type= is a bind
                src = opts.get("source") or opts.get("src") or "."
                read = ContextRead(
                    ins.line, ins.text, (expand_word(src, self.env, escape=self.escape),)
                )
                self.reads.append((read, self.current))
