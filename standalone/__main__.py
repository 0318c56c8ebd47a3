"""``python -m taskframe.standalone``: the ``taskframe-server`` command."""

import sys

from taskframe.standalone import main

sys.exit(main())
