"""``python -m daskgmm``: the ``daskgmm`` command."""

from .cli import main

main()
