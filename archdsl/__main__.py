"""`python -m archdsl`."""

from archdsl.cli import main

raise SystemExit(main())
