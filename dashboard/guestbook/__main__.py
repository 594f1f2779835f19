"""`python -m dashboard.guestbook`: run one guestbook frontend process (one "frontend pod").

    python -m dashboard.guestbook --host 127.0.0.1 --port PORT --endpoints FILE [--max-entry-length 500] [--name POD]

Prints `listening on http://HOST:PORT` once ready, one line per error afterwards, and exits 0 on SIGTERM/SIGINT.
"""

from dashboard.guestbook.server import main

if __name__ == "__main__":
    raise SystemExit(main())
