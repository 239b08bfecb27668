"""``python -m daskgmm``: the ``daskgmm`` command."""

from .cli.main import main

main()
