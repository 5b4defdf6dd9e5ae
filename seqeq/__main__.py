"""``python -m seqeq``: the command line, as the ``seqeq`` script."""

from .cli import main

if __name__ == "__main__":
    main()
