"""`python -m nderegs ...`: the same as the `nderegs` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
