"""`python -m dashboard`: the same entry point as the `guestbook-lab` console script."""

from dashboard.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
