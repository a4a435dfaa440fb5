import sys

from bhoga.cli.main import main

sys.exit(main())
