import sys

from .cli import fast_exit, main

fast_exit(main())
