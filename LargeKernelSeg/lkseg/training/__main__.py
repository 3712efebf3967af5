"""``python -m lkseg.training`` (also under ``torchrun``)."""

import sys

from lkseg.training.train import main

sys.exit(main())
