import sys

from fl_crb.cli import main

sys.exit(main())
