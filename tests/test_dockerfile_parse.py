"""One Dockerfile at a time: what it is built on and what it reads, as BuildKit sees it."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ci_layers.dockerfile import BaseImage, DockerfileError, parse_dockerfile


def reads(text: str, **args: str) -> list[tuple[str, ...]]:
    return [r.sources for r in parse_dockerfile(text, build_args=args).reads]


def test_only_whole_word_heredocs_of_run_copy_add() -> None:
    text = "FROM a\nRUN sed -i 's/<<VERSION>>/1/' f\nRUN cat <<<hi\nCOPY app.txt /\n"
    assert reads(text) == [("app.txt",)]
    text = "FROM a\nRUN <<EOF\necho <<X\nEOF\nCOPY <<EOF /etc/x\nhello\nEOF\nCOPY b.txt /\n"
    parsed = parse_dockerfile(text, build_args={})
    assert [r.sources for r in parsed.reads] == [("b.txt",)]
    assert parsed.instructions[1].heredocs == ("echo <<X",)


def test_dash_heredoc_strips_tabs_and_an_open_heredoc_is_an_error() -> None:
    parsed = parse_dockerfile("FROM a\nRUN <<-EOT\n\techo hi\n\tEOT\nCOPY x /\n", build_args={})
    assert parsed.instructions[1].heredocs == ("echo hi",)
    with pytest.raises(DockerfileError, match="never closed") as info:
        parse_dockerfile("FROM a\nRUN <<EOF\necho\n", build_args={})
    assert info.value.line == 2


def test_json_form_is_expanded_and_stage_args_do_not_see_globals() -> None:
    assert reads('FROM a\nARG CFG=cfg.txt\nCOPY ["${CFG}", "/etc/"]\n') == [("cfg.txt",)]
    # a global ARG is not visible in a stage unless declared again
    assert reads("ARG SRC=a.txt\nFROM alpine\nCOPY ${SRC:-b.txt} /x\n") == [("b.txt",)]
    assert reads("ARG SRC=a.txt\nFROM alpine\nARG SRC\nCOPY ${SRC:-b.txt} /x\n") == [("a.txt",)]
    assert reads("FROM alpine\nARG SRC=x\nCOPY $SRC /x\n", SRC="from-args") == [("from-args",)]


def test_env_carries_into_a_stage_built_on_a_stage() -> None:
    text = "FROM base AS a\nENV SRC=conf\nFROM a\nCOPY $SRC /etc/\n"
    assert reads(text) == [("conf",)]


def test_mounts_and_excludes() -> None:
    parsed = parse_dockerfile(
        "FROM a\nRUN --mount=source=setup.sh,target=/s.sh sh /s.sh\n"
        "RUN --mount=type=cache,target=/c true\nCOPY --exclude=*.md src/ /src/\n",
        build_args={},
    )
    assert [(r.sources, r.exclude) for r in parsed.reads] == [
        (("setup.sh",), ()),
        (("src/",), ("*.md",)),
    ]


def test_quoted_arg_values() -> None:
    parsed = parse_dockerfile('ARG MSG="hello world" N=1\nFROM img:$N\n', build_args={})
    assert parsed.bases == ("img:1",)


def test_from_arguments() -> None:
    parsed = parse_dockerfile(
        "ARG REGISTRY=r.example\nARG BASE=$REGISTRY/acme/base\nFROM ${BASE}\n"
        "FROM $REGISTRY/acme/x\nCOPY --from=0 /a /a\n",
        build_args={},
    )
    assert parsed.bases == ("r.example/acme/base", "r.example/acme/x")
    assert parsed.base_args == (("r.example/acme/base", "BASE"),)  # only a whole-word ARG


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("FROM ${UNDEF}\n", "expands to nothing", 1),
        ("FROM a\nBOGUS x\n", "unknown instruction: BOGUS", 2),
        ("FROM a\nCOPY --from=${Y:?y} /a /b\n", "Y: y", 2),
        ('FROM a\nENV A="x\n', "double-quote", 2),
        ("# just a comment\n", "no FROM instruction", 1),
        ("FROM a\nONBUILD FROM b\n", "ONBUILD cannot trigger FROM", 2),
        ("FROM a\nCOPY a\n", "COPY needs a source and a destination", 2),
        ("FROM a\nADD\n", "ADD needs a source and a destination", 2),
        ("FROM alpine AS\n", "write FROM <image> or FROM <image> AS <name>", 1),
        ("FROM alpine base\n", "write FROM <image> or FROM <image> AS <name>", 1),
        ("FROM a AS 1st\n", "invalid stage name '1st'", 1),
        ("FROM a\nCOPY --from=5 /x /y\n", "--from=5 names no earlier stage", 2),
        ("FROM a\nCOPY [a /x\n", "COPY source: unterminated character class", 2),
        ("FROM a\nCOPY a[ /x\n", "COPY source: unterminated character class", 2),
        ("FROM a\nCOPY [z-a] /x\n", "COPY source: bad pattern", 2),
        ('FROM a\nCOPY ["a", /x\n', "COPY source: unterminated character class", 2),
        ("FROM a\nCOPY --exclude=[ a /y\n", "--exclude: bad .dockerignore pattern", 2),
        ("FROM a\nONBUILD onbuild RUN x\n", "ONBUILD cannot trigger ONBUILD", 2),
    ],
)
def test_bad_dockerfiles_name_the_line(text: str, message: str, line: int) -> None:
    with pytest.raises(DockerfileError, match=message) as info:
        parse_dockerfile(text, build_args={})
    assert info.value.line == line


def test_the_escape_directive_changes_the_escape_token() -> None:
    text = "# escape=`\nFROM a\nRUN echo a `\n  b\nCOPY c:\\dir\\x /y\n"
    parsed = parse_dockerfile(text, build_args={})
    assert parsed.instructions[0].keyword == "#ESCAPE"  # part of the key
    assert parsed.instructions[2].value == "echo a   b"
    assert [r.sources for r in parsed.reads] == [("c:\\dir\\x",)]


def test_crlf_line_ends_and_a_byte_order_mark() -> None:
    parsed = parse_dockerfile(
        "\ufeffFROM a\r\nCOPY x.txt /y\r\nRUN echo \\\r\n  hi\r\n", build_args={}
    )
    assert [i.keyword for i in parsed.instructions] == ["FROM", "COPY", "RUN"]
    assert [r.sources for r in parsed.reads] == [("x.txt",)]


_LINES = st.sampled_from(
    [
        "FROM a",
        "FROM ${X:-b} AS s",
        "FROM s",
        "ARG X=1",
        'ARG Y="a b"',
        "ARG",
        "ENV A=1 B=$A",
        "ENV A",
        "COPY x /y",
        'COPY ["$X", "/y"]',
        "COPY --from=s /a /b",
        "COPY --from=${Z:?z} /a /b",
        "ADD https://e.x/f /f",
        "RUN <<EOF",
        "EOF",
        "RUN <<-T",
        "\tT",
        "RUN --mount=source=q,target=/q x",
        "COPY --exclude=*.md src/ /s/",
        "# escape=`",
        "# comment",
        "",
        "RUN echo \\",
        "  more",
        'COPY "unclosed /x',
        "WORKDIR /w",
        "BOGUS",
        "COPY ${",
        "FROM",
        "COPY <<EOF /e",
    ]
)


@given(st.lists(_LINES, max_size=12))
def test_any_dockerfile_parses_or_names_its_line(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    line = None
    try:
        parse_dockerfile(text, build_args={})
    except DockerfileError as exc:  # the only way it may fail
        line = exc.line
    assert line is None or 1 <= line <= max(1, len(lines))


def test_onbuild_triggers_of_a_known_base_run_after_its_from() -> None:
    base = BaseImage(env=(("SRC", "conf"),), onbuild=("COPY $SRC/app.ini /etc/", "ENV X=1"))
    parsed = parse_dockerfile(
        "FROM r.example/base AS one\nCOPY x /x\nFROM one\nCOPY $X.txt /y\n",
        build_args={},
        base_image={"r.example/base": base}.get,
    )
    assert [(r.line, r.sources) for r in parsed.reads] == [
        (1, ("conf/app.ini",)),  # the trigger, with the base's ENV, at the FROM's line
        (2, ("x",)),
        (4, ("1.txt",)),  # the trigger's ENV persists into a stage built on the stage
    ]
    assert "ONBUILD COPY $SRC/app.ini" in parsed.reads[0].text
    assert parsed.final_onbuild == ()  # a base's triggers are not passed on


def test_onbuild_triggers_of_a_stage_run_in_the_stage_built_on_it() -> None:
    # BuildKit builds the stage as if into an image first (moby/buildkit#5490)
    parsed = parse_dockerfile(
        "FROM a AS s\nONBUILD COPY . /app\nFROM s\nONBUILD RUN make\n", build_args={}
    )
    assert [(r.line, r.sources) for r in parsed.reads] == [(3, (".",))]
    assert parsed.final_onbuild == ("RUN make",)  # the stage's ran and are gone


def test_an_invalid_from_reference_is_a_warning_with_its_line() -> None:
    parsed = parse_dockerfile("ARG TAG\nFROM python:${TAG}\nFROM ${NOPE}:1\n", build_args={})
    assert [line for line, _ in parsed.warnings] == [2, 3]
    assert "FROM python:${TAG} expands to 'python:'" in parsed.warnings[0][1]
    assert parse_dockerfile("FROM python:3\n", build_args={"TAG": "3"}).warnings == ()


def test_a_stage_arg_default_does_not_see_an_undeclared_global_arg() -> None:
    text = "ARG G=x\nFROM alpine\nARG F=${G:-y}.txt\nCOPY $F /f\n"
    assert reads(text) == [("y.txt",)]
    again = "ARG G=x\nFROM alpine\nARG G\nARG F=${G:-y}.txt\nCOPY $F /f\n"
    assert reads(again) == [("x.txt",)]


def test_a_local_folder_named_dot_git_is_read_a_git_url_is_not() -> None:
    parsed = parse_dockerfile(
        "FROM a\nADD lib.git /x\nADD git@github.com:o/r.git /y\n", build_args={}
    )
    assert [r.sources for r in parsed.reads] == [("lib.git",)]
    assert len(parsed.notes) == 1
    assert "git@github.com:o/r.git" in parsed.notes[0]


def test_mount_options_are_csv_in_any_case_and_flags_end_at_any_blank() -> None:
    assert reads("FROM a\nRUN --mount=type=BIND,source=f,target=/x true\n") == [("f",)]
    assert reads("FROM a\nRUN --mount=TYPE=bind,SOURCE=f,target=/x true\n") == [("f",)]
    assert reads('FROM a\nRUN --mount=type=bind,"source=f",target=/x true\n') == [("f",)]
    assert reads("FROM a\nRUN --mount=Type=Cache,target=/x true\n") == []
    assert reads("FROM a\nCOPY --chmod=644\tf /x\n") == [("f",)]


def test_a_heredoc_under_onbuild() -> None:
    parsed = parse_dockerfile("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\nRUN b\n", build_args={})
    assert parsed.final_onbuild == ("RUN <<EOF",)
    assert [(i.line, i.keyword, i.heredocs) for i in parsed.instructions[1:]] == [
        (2, "ONBUILD", ("echo hi",)),
        (5, "RUN", ()),
    ]


def test_automatic_platform_args_are_defined_for_from() -> None:
    text = "FROM r.example/base-${TARGETARCH}\nARG TARGETOS\nCOPY $TARGETOS-${TARGETARCH:-x} /y\n"
    parsed = parse_dockerfile(text, build_args={})
    assert parsed.bases == ("r.example/base-amd64",)
    assert parsed.reads[0].sources == ("linux-x",)  # a stage sees only what it declares
    arm = parse_dockerfile(text, build_args={"TARGETARCH": "arm64"})
    assert arm.bases == ("r.example/base-arm64",)


def test_only_stages_the_built_one_reaches_count() -> None:
    text = (
        "FROM r.example/tools AS unused\nCOPY u /u\n"
        "FROM alpine AS deps\nCOPY d /d\n"
        "FROM alpine AS assets\nCOPY a /a\n"
        "FROM r.example/node AS mounted\nCOPY m /m\n"
        "FROM deps\nCOPY --from=assets /a /a\nRUN --mount=from=mounted,target=/m true\nCOPY f /f\n"
    )
    parsed = parse_dockerfile(text, build_args={})
    assert [r.sources for r in parsed.reads] == [("d",), ("a",), ("m",), ("f",)]
    assert parsed.bases == ("alpine", "r.example/node")  # not the unused stage's image
    assert parsed.final_base == "alpine"
    assert all("COPY u" not in i.text for i in parsed.instructions)
    unused = parse_dockerfile(text, build_args={}, target="UNUSED")
    assert [r.sources for r in unused.reads] == [("u",)]
    assert unused.bases == ("r.example/tools",)
    with pytest.raises(DockerfileError, match="no stage named 'prod'"):
        parse_dockerfile(text, build_args={}, target="prod")
    with pytest.raises(DockerfileError, match="no stage named '0'"):  # names only, as BuildKit
        parse_dockerfile(text, build_args={}, target="0")


_PIN = "alpine@sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        (f"# escape=`\n# escape=\\\nFROM {_PIN}\n", "only one escape parser directive", 2),
        (f"FROM {_PIN} AS a\nFROM {_PIN} AS A\n", "duplicate stage name 'A'", 2),
        (f"FROM {_PIN} AS a\nCOPY --from=a /x /y\n", "stage 'a' cannot use itself", 2),
        (f"FROM --platfrom=linux/amd64 {_PIN}\n", "FROM: unknown flag --platfrom", 1),
    ],
    ids=["two-escapes", "duplicate-stage", "copy-from-itself", "unknown-from-flag"],
)
def test_what_buildkit_refuses_is_refused(text: str, message: str, line: int) -> None:
    """Each of these BuildKit refuses; ci-layers said ok (issue 12, case 10)."""
    with pytest.raises(DockerfileError, match=re.escape(message)) as caught:
        parse_dockerfile(text, build_args={})
    assert caught.value.line == line


def test_an_empty_escape_directive_is_a_comment() -> None:
    """BuildKit's directives need a value: `# escape=` alone is a comment, not an error."""
    parsed = parse_dockerfile(f"# escape=\nFROM {_PIN}\nRUN echo a \\\n  b\n", build_args={})
    assert [i.keyword for i in parsed.instructions] == ["FROM", "RUN"]


def test_a_word_that_doubles_without_end_is_a_located_error() -> None:
    """Thirty `ARG A=$A$A` took minutes and then all memory (issue 12, case 3b)."""
    text = "ARG A=ab\n" + "ARG A=$A$A\n" * 30 + f"FROM {_PIN}\n"
    with pytest.raises(DockerfileError, match="a word expands past 64 KiB") as caught:
        parse_dockerfile(text, build_args={})
    assert caught.value.line == 17


def test_many_stars_in_a_substitution_do_not_backtrack() -> None:
    text = (
        f"ARG A={'x' * 3000}\nARG B=${{A/{'*' * 20}b/y}}\nARG C=${{A#{'*' * 20}b}}\nFROM {_PIN}\n"
    )
    parsed = parse_dockerfile(text, build_args={})
    assert [i.keyword for i in parsed.instructions][-1] == "FROM"
