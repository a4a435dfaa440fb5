"""The ``bhoga`` command: one module per command; ``main`` parses and dispatches.

``entry`` is the console script. It sends ``bhoga statusline`` (run by Claude Code on every
statusline refresh) straight to its lean module, before the argparse tree and the client are
imported; every other command goes to ``bhoga.cli.main``.
"""

from __future__ import annotations


def entry() -> int:
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "statusline":
        from bhoga.cli import statusline

        return statusline.main(sys.argv[2:])
    from bhoga.cli.main import main

    return main()
