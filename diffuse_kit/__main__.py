import sys

from diffuse_kit.cli import main

sys.exit(main())
