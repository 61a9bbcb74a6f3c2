import sys

from layerforge.cli import main

sys.exit(main())
