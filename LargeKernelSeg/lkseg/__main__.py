import sys

from lkseg.cli import main

sys.exit(main())
