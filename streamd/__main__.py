"""Allow ``python -m streamd``."""

from streamd.cli import main

raise SystemExit(main())
