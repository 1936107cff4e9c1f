"""The documentation runs as written: every code block of README.md and docs/*.md is
extracted from the page (not copied here) and checked.

- ```python blocks run, in the order of their page, in one namespace per page (a later
  block may use what an earlier one defined, as a reader going down the page would), in
  a working directory holding `runs/digits-error-seed0` (a tiny finished run, for the
  snippets that load one);
- ```bash blocks: each `nderegs ...` command (after any launcher such as `srun` or
  environment assignments) is parsed by the command line and its configuration resolved
  for every method and grid value it names, without training (`train` as with
  `--print-config`; `--resume` and `eval` on the tiny run); `python FILE`/`bash FILE`
  must name an existing file. Installing, the test command itself and cluster launchers
  are not run.

A page whose python blocks are those of a page already run (docs/index.md repeats the
README's) is not run twice.
"""

import contextlib
import io
from pathlib import Path
import re
import shlex
import shutil
import textwrap
import warnings

import jax
import pytest

import nderegs
from nderegs.cli import _parser, main
from nderegs.config import ConfigError
from nderegs.report.runs import normalize_methods, run_config, split_entries
from nderegs.report.sweep import Grid, method_settings

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: A fenced block, also indented (in a list item or an admonition).
FENCE = re.compile(r"^([ \t]*)```(\w*)[^\n]*\n(.*?)^\1```", re.MULTILINE | re.DOTALL)
#: The run the snippets load ("runs/digits-error-seed0"), as `nderegs train method=error`
#: writes it.
RUN = "runs/digits-error-seed0"


def code_blocks(page: Path, language: str) -> list[tuple[int, str]]:
    """`(line number, code)` of every fenced block of `language` in `page`."""
    text = page.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 1, textwrap.dedent(m.group(3)))
        for m in FENCE.finditer(text)
        if m.group(2) == language
    ]


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _pages_with(language: str) -> list[Path]:
    return [p for p in PAGES if code_blocks(p, language)]


def test_the_pages_hold_code_and_every_block_is_python_bash_or_text():
    """A block in another language would escape these tests: say what it is."""
    assert code_blocks(ROOT / "README.md", "python") and code_blocks(ROOT / "README.md", "bash")
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        languages = {m.group(2) for m in FENCE.finditer(text)}
        assert languages <= {"python", "bash", "text"}, (_name(page), languages)


@pytest.fixture
def docs_cwd(tiny_runs, tmp_path, monkeypatch):
    """A working directory like the repository's root (its configs/, experiments/, ...),
    with the tiny finished error run at `runs/digits-error-seed0`."""
    shutil.copytree(tiny_runs.finished("method=error"), tmp_path / RUN)
    for folder in ("configs", "experiments", "benchmarks", "notebooks"):  # as in a clone
        (tmp_path / folder).symlink_to(ROOT / folder)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _already_run(page: Path) -> Path | None:
    blocks = [code for _, code in code_blocks(page, "python")]
    for earlier in PAGES[: PAGES.index(page)]:
        if [code for _, code in code_blocks(earlier, "python")] == blocks:
            return earlier
    return None


@pytest.mark.parametrize("page", _pages_with("python"), ids=_name)
def test_python_blocks_run(page, docs_cwd):
    if (earlier := _already_run(page)) is not None:
        pytest.skip(f"its python blocks are {_name(earlier)}'s, run there")
    namespace: dict = {"__name__": "__docs__"}
    for line, code in code_blocks(page, "python"):
        where = f"{_name(page)}:{line}"
        try:
            # JAX's default promotion, as a reader has it (the suite runs strict; optax's
            # adam is not strict-clean).
            # A snippet whose field hides its parameters would teach a bug: an error here.
            with (
                contextlib.redirect_stdout(io.StringIO()),
                jax.numpy_dtype_promotion("standard"),
                warnings.catch_warnings(),
            ):
                warnings.simplefilter("error", nderegs.ParameterlessFieldWarning)
                exec(compile(code, where, "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"the block at {where} fails: {type(e).__name__}: {e}") from e


def shell_commands(code: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\s*\\\n\s*", " ", code)
    commands = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        for part in re.split(r"\s*(?:&&|;)\s*", line):
            if part:
                commands.append(part)
    return commands


def _check_nderegs(argv: list[str], where: str) -> None:
    """Resolve what an `nderegs` command would train, without training."""
    if argv[:1] in (["--version"], ["--help"]) or "--help" in argv:
        with pytest.raises(SystemExit) as stopped, contextlib.redirect_stdout(io.StringIO()):
            main(argv)
        assert stopped.value.code == 0, where
        return
    command = argv[0]
    if command == "eval" or (command == "train" and "--resume" in argv):
        assert main(argv) == 0, where  # on the tiny run: quick
        return
    if command == "train":
        assert main([*argv, "--print-config"]) == 0, where
        return
    opts, extra = _parser().parse_known_args(argv)
    overrides = [*opts.overrides, *extra]
    config = opts.config
    if config is not None and "=" in config:  # `nderegs compare a=b`: no CONFIG given
        overrides.insert(0, config)
        config = None
    grids = [Grid.parse(g) for g in getattr(opts, "grid", None) or []]
    for method in normalize_methods(split_entries(opts.methods)):
        for setting in method_settings(method, grids):
            run_config(config, overrides, method, 0, setting)


@pytest.mark.parametrize("page", _pages_with("bash"), ids=_name)
def test_shell_commands_resolve(page, docs_cwd, capsys):
    checked = 0
    for line, code in code_blocks(page, "bash"):
        for command in shell_commands(code):
            where = f"{_name(page)}:{line}: {command}"
            words = shlex.split(command)
            if "nderegs" in words:
                argv = words[words.index("nderegs") + 1 :]
                _check_nderegs(argv, where)
                checked += 1
            elif words[:1] in (["python"], ["python3"], ["bash"]) and len(words) > 1:
                script = words[1] if words[1] != "-m" else None
                if script is not None and not script.startswith("-"):
                    assert (ROOT / script).is_file(), f"{where}: no file {script}"
                    checked += 1
    capsys.readouterr()
    assert checked or page.name != "training.md"


def test_the_shell_check_catches_a_bad_key(docs_cwd):
    with pytest.raises(AssertionError):
        _check_nderegs(["train", "regularization.nope=1"], "here")
    with pytest.raises(ConfigError, match="nope"):
        _check_nderegs(["compare", "--methods", "vanilla,nope"], "here")
    with pytest.raises(ConfigError, match="nope"):
        _check_nderegs(["sweep", "--methods", "error", "--grid", "error:nope=1,2"], "here")
    assert shell_commands("a \\\n  b  # c\n# d\nx && y") == ["a b", "x", "y"]


def test_the_python_check_names_the_failing_block(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    # The second block is indented (in a list item): found, dedented and run too.
    page.write_text(
        "text\n\n```python\nx = 1\n```\n\n- item\n\n    ```python\n    y = x + nope\n    ```\n"
    )
    monkeypatch.setattr(f"{__name__}.PAGES", [page])
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    with pytest.raises(AssertionError, match=r"page.md:9 fails: NameError"):
        test_python_blocks_run(page, tmp_path)
