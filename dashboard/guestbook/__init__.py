"""The guestbook frontend in Python: the upstream gb-frontend:v5 HTTP API and storage, without its bugs."""
