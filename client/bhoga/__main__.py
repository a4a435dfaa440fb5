import sys

from bhoga.cli import main

sys.exit(main())
