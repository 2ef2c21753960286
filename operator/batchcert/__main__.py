"""``python -m batchcert`` is the ``batchcert`` console script."""

from batchcert.cli import main

raise SystemExit(main())
