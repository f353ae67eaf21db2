"""Non-determinism lint (`ci-layers lint`): what breaks cache reuse and reproducibility.

Commands are read as the shell reads them (shlex, with `&&`, `|`, `;` as operators):
the words of each simple command are checked, never the raw line, so `echo "apt-get
install x"` is no install and a `\\`-continued RUN is one command. Spec layers' `run`
items and `from:`, and Dockerfile images' RUN (shell and exec form, heredocs), FROM and
ADD are checked. Each finding has file:line:column, a rule id, a severity and a fix.
`# ci-layers: ignore=RULE[,RULE]` on the line of the finding, or on the line above the
instruction or `run` item, suppresses it.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .refs import image_key
from .spec import Spec

__all__ = ["RULES", "Finding", "lint_checkout", "lint_commands", "lint_spec"]

# rule id -> (severity, what, fix)
RULES: dict[str, tuple[str, str, str]] = {
    "curl-pipe-sh": (
        "error",
        "a download is piped into a shell",
        "download to a file, check its sha256 (sha256sum -c), then run it",
    ),
    "download-unverified": (
        "warning",
        "a download is used without a checksum check",
        "pin a checksum: echo '<sha256>  file' | sha256sum -c",
    ),
    "apt-unpinned": (
        "warning",
        "apt-get install without versions",
        "pin each package: apt-get install -y pkg=1.2.3-1",
    ),
    "apt-update-unpinned": (
        "warning",
        "apt-get update before unpinned installs: each rebuild may install other versions",
        "pin the packages installed after it, or use a snapshot mirror",
    ),
    "apk-unpinned": (
        "warning",
        "apk add without versions",
        "pin each package: apk add pkg=1.2.3-r0",
    ),
    "dnf-unpinned": (
        "warning",
        "dnf/yum install without versions",
        "pin each package: dnf install -y pkg-1.2.3",
    ),
    "pip-unpinned": (
        "warning",
        "pip install without pinned versions",
        "pin (pkg==1.2.3) or install from a lock file with --require-hashes",
    ),
    "npm-install": (
        "warning",
        "npm install resolves versions anew",
        "use npm ci with a committed package-lock.json",
    ),
    "base-latest": (
        "error",
        "the base image is :latest (or has no tag)",
        "name a version and pin its digest: image:1.2@sha256:…",
    ),
    "base-unpinned": (
        "warning",
        "the base image is not pinned by digest",
        "pin its digest: image:tag@sha256:… (a tag can move)",
    ),
    "add-url": (
        "warning",
        "ADD <url> is fetched anew on every build and no key can see it",
        "download in a RUN with a checksum check, or ADD --checksum=sha256:…",
    ),
}

_SUPPRESS = re.compile(r"#\s*ci-layers:\s*ignore=([A-Za-z0-9_,\s-]+)")
_OPERATORS = {"&&", "||", "|", ";", "&", "(", ")", ";;", "|&", "\n"}
_SHELLS = {"sh", "bash", "zsh", "dash", "ash", "ksh", "python", "python3", "perl", "ruby", "node"}
_VERIFY = {"sha256sum", "sha512sum", "shasum", "gpg", "gpgv", "cosign", "minisign", "md5sum"}


@dataclass(frozen=True, slots=True)
class Finding:
    file: str
    line: int
    col: int
    rule: str
    layer: str | None
    message: str

    @property
    def severity(self) -> str:
        return RULES[self.rule][0]

    @property
    def hint(self) -> str:
        return RULES[self.rule][2]

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "rule": self.rule,
            "severity": self.severity,
            "layer": self.layer,
            "message": self.message,
            "hint": self.hint,
        }

    def __str__(self) -> str:
        who = f" [{self.layer}]" if self.layer else ""
        return (
            f"{self.file}:{self.line}:{self.col}: {self.severity} {self.rule}{who}: "
            f"{self.message} (fix: {self.hint})"
        )


# --- shell ----------------------------------------------------------------------------


def _commands(script: str) -> Iterator[tuple[list[str], str | None]]:
    """(words of each simple command, the operator after it), as the shell splits them;
    a script shlex cannot split (an open quote) yields nothing."""
    script = script.replace("\\\n", " ").replace("\n", " ; ")  # one command per line
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    words: list[str] = []
    try:
        for token in lexer:
            if token in _OPERATORS:
                yield words, token
                words = []
            else:
                words.append(token)
    except ValueError:
        return
    if words:
        yield words, None


def _strip_prefix(words: list[str]) -> list[str]:
    """The command without `VAR=x`, `sudo`, `env`, `exec`, `command` in front of it."""
    i = 0
    while i < len(words):
        w = words[i]
        if (
            re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", w)
            or w
            in (
                "sudo",
                "env",
                "exec",
                "command",
                "nice",
            )
            or (w.startswith("-") and i > 0 and words[i - 1] in ("sudo", "env"))
        ):
            i += 1
        else:
            break
    return words[i:]


def _packages(args: list[str], *, value_options: tuple[str, ...] = ()) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in value_options:
            skip = True
        elif not a.startswith("-"):
            out.append(a)
    return out


def lint_commands(script: str) -> list[tuple[str, str, str]]:
    """(rule, the word to point at, message) for one shell script; the word is named as
    `word#n` when it is its n-th command of that name in the script (0-based)."""
    found: list[tuple[str, str, str]] = []
    cmds = list(_commands(script))
    names = [(_strip_prefix(w) or [""])[0].rsplit("/", 1)[-1] for w, _op in cmds]
    verified = any(n in _VERIFY for n in names)
    unpinned_apt = False
    seen: dict[str, int] = {}
    for i, (raw, op) in enumerate(cmds):
        words = _strip_prefix(raw)
        if not words:
            continue
        name = names[i]
        args = words[1:]
        nth = seen.get(words[0], 0)
        seen[words[0]] = nth + 1
        words = [f"{words[0]}#{nth}", *args]
        if name in ("curl", "wget"):
            nxt = names[i + 1] if i + 1 < len(names) else ""
            if op == "|" and nxt in _SHELLS | {"sudo"}:
                found.append(
                    ("curl-pipe-sh", words[0], f"{name} … | {nxt}: {RULES['curl-pipe-sh'][1]}")
                )
            elif not verified and any(a.startswith("http") for a in args):
                found.append(("download-unverified", words[0], RULES["download-unverified"][1]))
        elif name in ("apt-get", "apt") and args[:1] and "install" in args:
            pkgs = _packages(args[args.index("install") + 1 :], value_options=("-o", "-t"))
            loose = [p for p in pkgs if "=" not in p and not p.endswith(".deb")]
            if loose:
                unpinned_apt = True
                found.append(
                    ("apt-unpinned", words[0], f"{name} install {' '.join(loose[:5])}: no versions")
                )
        elif name == "apk" and "add" in args:
            pkgs = _packages(
                args[args.index("add") + 1 :],
                value_options=("-X", "--repository", "-t", "--virtual"),
            )
            loose = [p for p in pkgs if "=" not in p and "~" not in p]
            if loose:
                found.append(
                    ("apk-unpinned", words[0], f"apk add {' '.join(loose[:5])}: no versions")
                )
        elif name in ("dnf", "yum", "microdnf", "tdnf") and "install" in args:
            pkgs = _packages(args[args.index("install") + 1 :])
            loose = [p for p in pkgs if not re.search(r"-\d", p) and not p.endswith(".rpm")]
            if loose:
                found.append(
                    ("dnf-unpinned", words[0], f"{name} install {' '.join(loose[:5])}: no versions")
                )
        elif re.fullmatch(r"pip[0-9.]*", name) or (
            name.startswith("python") and args[:2] == ["-m", "pip"]
        ):
            rest = args[2:] if name.startswith("python") else args
            if "install" in rest:
                tail = rest[rest.index("install") + 1 :]
                if "--require-hashes" in tail or any(
                    a in ("-r", "--requirement", "-c") for a in tail
                ):
                    continue
                pkgs = _packages(
                    tail, value_options=("-i", "--index-url", "--extra-index-url", "-f", "-t")
                )
                loose = [p for p in pkgs if not re.search(r"==|@|\.whl$|^[./]|://", p)]
                if loose:
                    found.append(
                        ("pip-unpinned", words[0], f"pip install {' '.join(loose[:5])}: no pins")
                    )
        elif name == "npm" and args[:1] and args[0] in ("install", "i", "add"):
            found.append(("npm-install", words[0], f"npm {args[0]}: {RULES['npm-install'][1]}"))
    if unpinned_apt:
        for raw, _op in cmds:
            words = _strip_prefix(raw)
            if (
                words[:1]
                and words[0].rsplit("/", 1)[-1] in ("apt-get", "apt")
                and "update" in words[1:]
            ):
                found.append(("apt-update-unpinned", words[0], RULES["apt-update-unpinned"][1]))
    return found


# --- where things are -----------------------------------------------------------------


class _Source:
    """The raw lines of a file: for columns, and for suppression comments."""

    def __init__(self, name: str, text: str) -> None:
        self.name, self.lines = name, text.splitlines()

    def locate(self, word: str, start: int, end: int) -> tuple[int, int]:
        """(line, col), 1-based, of `word` in lines start..end: its n-th occurrence as a
        whole word for `word#n`, else its first."""
        word, _, nth_text = word.partition("#")
        nth = int(nth_text) if nth_text.isdigit() else 0
        pattern = re.compile(rf"(?<![\w./-]){re.escape(word)}(?![\w-])")
        for n in range(max(1, start), min(len(self.lines), end) + 1):
            for m in pattern.finditer(self.lines[n - 1]):
                if nth == 0:
                    return n, m.start() + 1
                nth -= 1
        return start, 1

    def suppressed(self, rule: str, line: int, first: int) -> bool:
        for n in {line, first - 1, first}:
            m = _SUPPRESS.search(self.lines[n - 1]) if 1 <= n <= len(self.lines) else None
            if m and rule in {r.strip() for r in m.group(1).split(",")}:
                return True
        return False


def _base_findings(ref: str) -> list[tuple[str, str]]:
    if ref in ("scratch", "") or "$" in ref:
        return []
    name, _, digest = ref.partition("@")
    _host, _path, tag = image_key(name)
    last = name.rsplit("/", 1)[-1]
    if tag == "latest" and not digest:
        shown = "no tag" if ":" not in last else ":latest"
        return [("base-latest", f"{ref}: {shown}, so it is whatever latest is today")]
    if not digest:
        return [("base-unpinned", f"{ref}: not pinned by digest")]
    return []


def _emit(
    out: list[Finding],
    src: _Source,
    rule: str,
    word: str,
    message: str,
    *,
    layer: str | None,
    start: int,
    end: int,
) -> None:
    line, col = src.locate(word, start, end)
    if not src.suppressed(rule, line, start):
        out.append(Finding(src.name, line, col, rule, layer, message))


def lint_spec(spec: Spec, spec_file: tuple[str, str] | None, read: Any) -> list[Finding]:
    """Findings for every layer: spec layers from `spec_file` (name, text), Dockerfile
    images from their files, read with `read(path) -> str | None`."""
    out: list[Finding] = []
    if spec_file is not None:
        out += _lint_spec_layers(spec, _Source(*spec_file))
    seen: set[str] = set()  # an image built for several platforms: its file once
    for layer in spec.graph.layers.values():
        node, name = layer.dockerfile, layer.origin
        if node is None or name in seen or node.inline is not None:
            continue  # (a bake target's dockerfile-inline has no file of its own to point at)
        seen.add(name)
        text = read(node.file)
        if text is None:
            continue
        out += _lint_dockerfile(name, node, _Source(node.file, text))
    return sorted(out, key=lambda f: (f.file, f.line, f.col, f.rule))


def lint_checkout(spec: Spec, root: Path, spec_file: Path | None, shown: str) -> list[Finding]:
    """lint_spec over the files of a checkout: the spec at `spec_file` (shown as
    `shown`), Dockerfiles under `root`."""

    def read(path: str | Path) -> str | None:
        try:
            return (root / path).read_text(errors="replace")
        except OSError:
            return None

    text = read(spec_file) if spec_file is not None else None
    return lint_spec(spec, (shown, text) if text is not None else None, read)


def _lint_spec_layers(spec: Spec, src: _Source) -> list[Finding]:
    from .yamlpos import Map, Seq, load_located

    data, _errors = load_located("\n".join(src.lines) + "\n", src.name)
    layers = data.get("layers") if isinstance(data, Map) else None
    out: list[Finding] = []
    if not isinstance(layers, Map):
        return out
    seen: set[str] = set()  # a layer built for several platforms: its entry once
    for layer in spec.graph.layers.values():
        name = layer.origin
        entry = layers.get(name)
        if layer.dockerfile is not None or not isinstance(entry, Map) or name in seen:
            continue
        seen.add(name)
        if layer.base and "from" in entry:
            line = entry.value_marks["from"].line + 1
            for rule, message in _base_findings(layer.base):
                _emit(
                    out,
                    src,
                    rule,
                    layer.base.split("@")[0],
                    message,
                    layer=name,
                    start=line,
                    end=line,
                )
        run = entry.get("run")
        items = list(run) if isinstance(run, Seq) else [run] if isinstance(run, str) else []
        marks = run.marks if isinstance(run, Seq) else [entry.value_marks.get("run")]
        for i, item in enumerate(items):
            if not isinstance(item, str):
                continue
            mark = marks[i]
            start = mark.line + 1 if mark is not None else 1
            end = start + item.count("\n") + 1
            for rule, word, message in lint_commands(item):
                _emit(out, src, rule, word, message, layer=name, start=start, end=end)
    return out


def _lint_dockerfile(name: str, node: Any, src: _Source) -> list[Finding]:
    out: list[Finding] = []
    lines = [line for line, _t, _h in node.instructions]
    ends = [*(n - 1 for n in lines[1:]), len(src.lines)]
    for (line, text, heredocs), end in zip(node.instructions, ends, strict=True):
        keyword, _, rest = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "RUN":
            scripts = [_run_script(rest), *heredocs]
            for script in scripts:
                for rule, word, message in lint_commands(script):
                    _emit(out, src, rule, word, message, layer=name, start=line, end=end)
        elif keyword == "ADD":
            for word in rest.split():
                if re.match(r"(https?|git)://|git@", word):
                    _emit(
                        out,
                        src,
                        "add-url",
                        word,
                        f"ADD {word}: {RULES['add-url'][1]}",
                        layer=name,
                        start=line,
                        end=end,
                    )
    for ref in node.externals:
        first = next((ln for ln, t, _h in node.instructions if t.upper().startswith("FROM")), 1)
        written = next(
            (
                ln
                for ln, t, _h in node.instructions
                if t.upper().startswith("FROM") and ref.split("@")[0] in t
            ),
            first,
        )
        for rule, message in _base_findings(ref):
            _emit(
                out,
                src,
                rule,
                ref.split("@")[0].rsplit("/", 1)[-1].split(":")[0],
                message,
                layer=name,
                start=written,
                end=written,
            )
    return out


def _run_script(rest: str) -> str:
    """A RUN's command: its flags (`--mount=…`) dropped; the exec form's words joined."""
    words = rest.lstrip()
    while words.startswith("--"):
        _flag, _, words = words.partition(" ")
        words = words.lstrip()
    if words.startswith("["):
        try:
            argv = json.loads(words)
        except ValueError:
            return words
        if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
            if len(argv) >= 3 and argv[0].rsplit("/", 1)[-1] in _SHELLS and argv[1] == "-c":
                return str(argv[2])
            return " ".join(shlex.quote(a) for a in argv)
    return words
