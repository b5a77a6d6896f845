import sys

from harness.fakes.xai.server import main

sys.exit(main())
