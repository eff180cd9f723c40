"""``python -m taskfit`` is the same as the ``taskfit`` command."""

from taskfit.cli import main

main()
