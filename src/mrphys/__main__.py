import sys

from mrphys.cli import main

sys.exit(main())
