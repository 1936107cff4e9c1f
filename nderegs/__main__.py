"""`python -m nderegs ...`: the same as the `nderegs` command."""

from .cli import main

raise SystemExit(main())
