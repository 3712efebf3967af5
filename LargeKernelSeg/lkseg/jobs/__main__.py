"""``python -m lkseg.jobs run JOBDIR``: the job supervisor."""

import sys

from lkseg.jobs.supervisor import main

sys.exit(main())
