"""Allows ``python -m kpiguard``."""

from kpiguard.cli import main

raise SystemExit(main())
