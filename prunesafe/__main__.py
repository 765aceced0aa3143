"""``python -m prunesafe`` runs the ``prunesafe`` command (see :mod:`prunesafe.cli`)."""

from prunesafe.cli import main

raise SystemExit(main())
