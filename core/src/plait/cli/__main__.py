"""``python -m plait.cli``: the same as the ``plait`` command."""

from plait.cli import main

if __name__ == "__main__":
    main()
