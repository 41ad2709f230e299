"""``python -m edgedistill``: the CLI, also as torchrun runs it (``torchrun ... -m edgedistill``)."""

from edgedistill.cli import main

main()
