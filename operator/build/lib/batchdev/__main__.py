import sys

from batchdev.cli import main

sys.exit(main())
