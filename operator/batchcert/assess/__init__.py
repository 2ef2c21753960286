"""Pure assessments: facts read from Azure in, status and condition updates out (no I/O)."""
