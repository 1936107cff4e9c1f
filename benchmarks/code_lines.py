"""Lines of code of Python files or folders: non-blank lines outside comments and
docstrings (module, class and function docstrings), as #25 counts `config/`.

    python benchmarks/code_lines.py nderegs/config
"""

import ast
import io
from pathlib import Path
import sys
import tokenize

_LAYOUT = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENCODING,
    tokenize.ENDMARKER,
}


def code_lines(path: Path) -> int:
    source = path.read_text()
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in _LAYOUT:
            lines.update(n for n in range(token.start[0], token.end[0] + 1) if n not in docstrings)
    return len(lines)


def main(paths: list[str]) -> None:
    files = sorted(f for p in map(Path, paths) for f in (p.rglob("*.py") if p.is_dir() else [p]))
    counts = {f: code_lines(f) for f in files}
    for f, n in counts.items():
        print(f"{n:6d} {f}")
    print(f"{sum(counts.values()):6d} total")


if __name__ == "__main__":
    main(sys.argv[1:])
