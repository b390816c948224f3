"""`python -m coda_lsp` is the `coda-lsp` command."""

import sys

from coda_lsp.cli import main

sys.exit(main())
