import sys

from hbeval.cli import main

sys.exit(main())
