"""`python -m funnelbot` is the `funnelbot` command."""

from funnelbot.cli import main

raise SystemExit(main())
