"""`python -m daemon ...` is `npc-voice ...`."""

from daemon.cli import main

raise SystemExit(main())
