import os
import sys

# A workflow's local jobs hand their command to the warm worker (dho.worker) when one
# listens on $DHO_WORKER: no torch import here, the forked child already holds it.
if os.environ.get("DHO_WORKER") and sys.argv[1:2] != ["worker"]:
    from .worker_client import forward

    _code = forward(os.environ["DHO_WORKER"], sys.argv[1:])
    if _code is not None:
        sys.exit(_code)

from .cli import fast_exit, main  # noqa: E402

fast_exit(main())
