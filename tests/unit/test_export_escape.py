"""Exported Dockerfiles and bake files carry manifest values literally (issue 14, item 1).

Our builder stores env, labels and the workdir exactly as written: ``$X`` is not expanded.
A Dockerfile's ENV/LABEL/WORKDIR words pass through the Dockerfile shell lexer, and HCL
strings through HCL's template language, so both exports must escape. The lexer model below
is written from moby's ``shell.Lex`` double-quote rules (and the behaviour measured with
buildah: tests/integration/test_export_equivalence.py keeps it honest).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from layerforge.cli import main
from layerforge.errors import UsageError
from layerforge.export import EXPORTERS, make_context
from layerforge.export.escape import dockerfile_word, hcl_string
from layerforge.lock import lockfile
from layerforge.manifest import load
from tests.unit.test_export import fleet_context, options_for, write_project

NASTY = [
    "",
    "plain",
    "$X",
    "${X}",
    "a$$b",
    "/usr/local/cuda/lib64:$LD_LIBRARY_PATH",
    "x\\",
    "\\$HOME",
    "\\\\$",
    'say "hi"',
    "it's",
    "tab\there",
    "café ☃",
    "line\u2028sep",
    "%{ if x }",
    "a=b c",
    "#not a comment",
]


def lex_double_quoted(word: str) -> str:
    """The value of one double-quoted Dockerfile word (moby shell.Lex, processDoubleQuote):
    a backslash escapes only ``"``, ``$`` and itself; ``$`` starts an expansion."""
    assert word[0] == word[-1] == '"' and len(word) >= 2
    out: list[str] = []
    i = 1
    while i < len(word) - 1:
        ch = word[i]
        if ch == '"':
            raise AssertionError(f"an unescaped quote ends the word early: {word!r}")
        if ch == "$":
            raise AssertionError(f"an unescaped $ would be expanded: {word!r}")
        if ch == "\\" and i + 1 < len(word) - 1 and word[i + 1] in '"$\\':
            out.append(word[i + 1])
            i += 2
            continue
        if ch == "\\" and i + 1 == len(word) - 1:
            raise AssertionError(f"a trailing backslash escapes the closing quote: {word!r}")
        out.append(ch)
        i += 1
    return "".join(out)


@pytest.mark.parametrize("value", NASTY)
def test_dockerfile_word_round_trips(value: str) -> None:
    word = dockerfile_word(value, "k")
    assert "\n" not in word and "\r" not in word
    assert lex_double_quoted(word) == value


def test_dockerfile_word_keeps_todays_bytes_for_plain_values() -> None:
    for value in ("/app", "false", "1.0.0", "1970-01-01T00:00:00Z", "cpu:lf-0123456789ab"):
        assert dockerfile_word(value, "k") == json.dumps(value)


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "\n"])
def test_a_newline_cannot_be_written(value: str) -> None:
    with pytest.raises(UsageError, match=r"services\.api\.env\.X holds a newline"):
        dockerfile_word(value, "services.api.env.X")


def test_hcl_string_escapes_markers() -> None:
    assert hcl_string("${a} %{b}") == '"$${a} %%{b}"'
    assert hcl_string("a $ b % c $$ {") == '"a $ b % c $$ {"'
    assert hcl_string('q"\\') == '"q\\"\\\\"'


def nasty_project(root: Path, env: str = "", workdir: str = "/srv/my $dir/ü") -> Path:
    (root / "svc").mkdir(parents=True)
    write_project(
        root,
        '[project]\nname = "p"\npython = "3.12"\nversion = "1.0 ${V}"\n'
        '[bases.cpu]\nfrom = "python:3.12-slim"\n'
        'labels = { cost = "cost ${CENTER} $HOME", "x y" = "it\'s \\\\ ok", '
        '"org.opencontainers.image.description" = "${not} %{this}" }\n'
        '[services.svc]\nbase = "cpu"\nsource = "svc"\n'
        f"workdir = {json.dumps(workdir)}\n"
        'command = ["sh", "-c", "echo $HOME\\nx"]\n'
        "env = { LD_LIBRARY_PATH = '/usr/local/cuda/lib64:$LD_LIBRARY_PATH', "
        f"P2 = '/x:${{PATH}}', Q = 'a \"q\" b\\c', U = 'café ☃'{env} }}\n",
        {},
    )
    return root


def test_dockerfile_env_labels_workdir_are_literal(tmp_path: Path) -> None:
    root = nasty_project(tmp_path / "p")
    ctx = make_context(
        load(root / "layerforge.toml"), lockfile.read(root / "layerforge.lock"), options_for(root)
    )
    files = {
        f.path.relative_to(root).as_posix(): f.content for f in EXPORTERS["dockerfiles"].render(ctx)
    }
    text = files["docker/svc/Dockerfile"].decode()
    assert 'LD_LIBRARY_PATH="/usr/local/cuda/lib64:\\$LD_LIBRARY_PATH"' in text
    assert 'P2="/x:\\${PATH}"' in text
    assert 'U="café ☃"' in text  # UTF-8 as it is: Docker keeps \\u00e9 literally
    assert 'WORKDIR "/srv/my \\$dir/ü"' in text
    assert 'PYTHONPATH="/srv/my \\$dir/ü"' in text
    assert 'COPY --link ["svc/", "/srv/my \\\\$dir/ü/"]' in text
    cpu = files["docker/cpu/Dockerfile"].decode()
    assert 'cost="cost \\${CENTER} \\$HOME"' in cpu
    assert '"x y"="it\'s \\\\ ok"' in cpu
    assert 'org.opencontainers.image.version="1.0 \\${V}"' in cpu


def test_bake_annotations_are_literal(tmp_path: Path) -> None:
    root = nasty_project(tmp_path / "p")
    ctx = make_context(
        load(root / "layerforge.toml"), lockfile.read(root / "layerforge.lock"), options_for(root)
    )
    text = EXPORTERS["bake"].render(ctx)[0].content.decode()
    assert '"org.opencontainers.image.description=$${not} %%{this}"' in text
    assert '"org.opencontainers.image.version=1.0 $${V}"' in text
    # the two deliberate interpolations stay templates
    assert ":${substr(GIT_COMMIT, 0, 12)}" in text and "ref=${CACHE_REGISTRY}/" in text
    # nothing else interpolates: every ${ left is one of ours
    for found in re.findall(r"(?<!\$)\$\{[^}]*\}", text):
        assert found in ("${substr(GIT_COMMIT, 0, 12)}", "${CACHE_REGISTRY}"), found


def test_newline_in_env_is_a_clear_export_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = nasty_project(tmp_path / "p", env=', NL = "l1\\nl2"')
    assert load(root / "layerforge.toml").nodes["svc"].env  # the manifest stays valid
    for verb in (["dockerfiles", "--no-rootfs"], ["bake"]):
        code = main(["export", *verb, "-f", str(root)])
        err = capsys.readouterr().err
        assert code == 2, err
        assert "services.svc.env.NL holds a newline" in err
        assert "Traceback" not in err
    assert not (root / "docker").exists() and not (root / "docker-bake.hcl").exists()


def test_fleet_export_lines_unchanged_for_plain_values(example_copy: Path) -> None:
    """The example fleet has no value that needs escaping: its ENV, LABEL, WORKDIR and COPY
    lines keep the bytes they had before the escaping (json.dumps quoting, bare paths)."""
    ctx = fleet_context(example_copy)
    for f in EXPORTERS["dockerfiles"].render(ctx):
        if f.path.name != "Dockerfile":
            continue
        node = ctx.project.nodes[f.path.parent.name]
        text = f.content.decode()
        assert "\\$" not in text and "--link [" not in text
        for key, value in node.env:
            assert f"{key}={json.dumps(value)}" in text
        for key, value in node.labels:
            assert f"{key}={json.dumps(value)}" in text
        if node.source is not None:
            assert f"WORKDIR {node.workdir}\n" in text
            assert f"PYTHONPATH={json.dumps(node.workdir)}" in text
            assert f" {node.workdir}/\n" in text
