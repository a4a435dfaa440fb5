import sys

from bhoga.cli import entry

sys.exit(entry())
