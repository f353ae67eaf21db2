"""Dockerfile variable expansion, as BuildKit's shell lexer does it.

`expand_word` is BuildKit's ProcessWord (what `ARG` defaults and `FROM` use: quotes
removed, `$VAR`, `${VAR}`, `${VAR:-x}`, `${VAR:+x}`, `${VAR?x}`, `${VAR#p}`, `${VAR%p}`,
`${VAR/p/r}`, no field splitting); `expand_words` is ProcessWords (quote-aware splitting
on unquoted whitespace). The escape token is `\\` unless a `# escape=` directive says
otherwise. Checked against BuildKit's own test vectors (tests/data/shell-expansion.tsv).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["ExpansionError", "expand_word", "expand_words"]

_EOF = ""
_SPECIAL = set("@*#?-$!0")


MAX_WORD = 64 * 1024  # characters one word may expand to (issue 12, case 3b)


class ExpansionError(ValueError):
    """A word the lexer rejects (unbalanced quote, bad substitution, a `?` check)."""


class _Words:
    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace() and self.in_word:
            if self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        elif not ch.isspace():
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape
        self.raw_escapes = False

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else _EOF

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def process(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            return self._process(stop)
        finally:
            self.raw_escapes = saved

    def _process(self, stop: str) -> tuple[str, list[str]]:
        result: list[str] = []
        size = 0
        words = _Words()
        while self.peek() != _EOF:
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(result), words.result()
            if ch in "$'\"":
                handler = {"$": self.dollar, "'": self.single, '"': self.double}[ch]
                text = handler()
                size += len(text)
                if size > MAX_WORD:  # `ARG A=$A$A` twenty times doubles it to megabytes
                    raise ExpansionError(f"a word expands past {MAX_WORD // 1024} KiB")
                result.append(text)
                if ch == "$":
                    words.add_string(text)
                else:
                    words.add_raw(text)
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    words.add_raw(ch)
                    result.append(ch)
                ch = self.next()
                if ch == _EOF:
                    break
                words.add_raw(ch)
            else:
                words.add_char(ch)
            result.append(ch)
        if stop:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.result()

    def single(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.next()
            if ch == _EOF:
                raise ExpansionError("unexpected end of statement looking for a single-quote")
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def double(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.peek()
            if ch == _EOF:
                raise ExpansionError("unexpected end of statement looking for a double-quote")
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    out.append(ch)
                nxt = self.peek()
                if nxt == _EOF:
                    continue
                if nxt in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        name = ""
        while self.peek() != _EOF:
            ch = self.peek()
            if not name and ch.isdecimal():
                while self.peek() != _EOF and self.peek().isdecimal():
                    name += self.next()
                return name
            if not name and ch in _SPECIAL:
                return self.next()
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            name += self.next()
        return name

    def lookup(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            return self.env[name], True
        return "", False

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            return "$" if not name else self.lookup(name)[0]
        self.next()
        if self.peek() == _EOF:
            raise ExpansionError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if ch == "}":
            return self.lookup(name)[0]
        null_is_unset = False
        modifier = ch
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            modifier += ch
        if ch in ("+", "-", "?", "#", "%") and ch:
            if null_is_unset and ch in "#%":  # ${VAR:#p} is no shell syntax
                raise ExpansionError(f"unsupported modifier ({modifier}) in substitution")
            try:
                word, _ = self.process("}", ch in "#%")
            except ExpansionError:
                if self.peek() == _EOF:
                    raise ExpansionError("syntax error: missing '}'") from None
                raise
            value, is_set = self.lookup(name)
            empty = not is_set or (null_is_unset and value == "")
            if ch == "-":
                return word if empty else value
            if ch == "+":
                return "" if empty else word
            if ch == "?":
                if empty:
                    raise ExpansionError(f"{name}: {word or 'is not allowed to be unset or empty'}")
                return value
            greedy = word.startswith(ch)
            if greedy:
                word = word[1:]
            if ch == "%":
                return _trim_suffix(word, value, greedy)
            return _trim_prefix(word, value, greedy)
        if ch == "/" and not null_is_unset:
            replace_all = self.peek() == "/"
            if replace_all:
                self.next()
            try:
                pattern, _ = self.process("/", True)
            except ExpansionError:
                if self.peek() == _EOF:
                    raise ExpansionError("syntax error: missing '/' in ${}") from None
                raise
            try:
                replacement, _ = self.process("}", True)
            except ExpansionError:
                if self.peek() == _EOF:
                    raise ExpansionError("syntax error: missing '}'") from None
                raise
            value, _ = self.lookup(name)
            rx = _shell_pattern(pattern, greedy=True, anchored=False)
            if replace_all:
                return rx.sub(lambda _m: replacement, value)
            m = rx.search(value)
            return value if m is None else value[: m.start()] + replacement + value[m.end() :]
        raise ExpansionError(f"unsupported modifier ({modifier}) in substitution")


def _shell_pattern(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """? is one character, * the shortest (or with `greedy` the longest) string."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        tok = pattern[i]
        i += 1
        if tok == "*":
            if out and out[-1] == star:
                continue  # `**` is `*`: one run, not a backtracking product of them
            out.append(star)
            continue
        if tok == "?":
            out.append(".")
            continue
        if tok == "\\":
            if i < len(pattern) and pattern[i] in "}/":
                continue  # escaped only for the ${} syntax, not part of the pattern
            if i >= len(pattern) or pattern[i] not in "*?\\":
                bad = pattern[i] if i < len(pattern) else ""
                raise ExpansionError(f"invalid escape '\\{bad}' in pattern {pattern!r}")
            out.append(re.escape(pattern[i]))
            i += 1
            continue
        out.append(re.escape(tok))
    return re.compile("".join(out), re.DOTALL)


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _shell_pattern(pattern, greedy=greedy, anchored=True).search(value)
    return value if m is None else value[m.end() :]


def _reverse_pattern(pattern: str) -> str:
    # reverse, keeping each escape before the character it escapes: a\*c -> c\*a
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i != len(pattern) - 1:
            out.append(pattern[i : i + 2])
            i += 2
        else:
            out.append(pattern[i])
            i += 1
    return "".join(reversed(out))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def _plain(word: str, escape: str) -> bool:
    return not any(c in word for c in ("$", "'", '"', escape))


def expand_word(word: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """BuildKit's ProcessWord: one string, quotes removed, variables expanded."""
    if _plain(word, escape):  # nothing to expand or unquote
        return word
    return _process(word, env, escape)[0]


def expand_words(word: str, env: Mapping[str, str], *, escape: str = "\\") -> list[str]:
    """BuildKit's ProcessWords: split on unquoted whitespace after expansion."""
    if _plain(word, escape):
        return word.split()
    return _process(word, env, escape)[1]


def _process(word: str, env: Mapping[str, str], escape: str) -> tuple[str, list[str]]:
    try:
        return _Lexer(word, env, escape).process(_EOF, False)
    except RecursionError:  # ${A:-${A:-...}} thousands deep (issue 12, case 5)
        raise ExpansionError("variables are nested too deeply") from None
