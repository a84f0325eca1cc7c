"""``python -m retrograd ...``: the ``retrograd`` command without relying on the scripts directory being on PATH."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
