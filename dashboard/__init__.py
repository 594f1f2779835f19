"""Guestbook lab dashboard: run the Kubernetes "PHP Guestbook with Redis" lab step by step and watch it live."""

__version__ = "0.1.0"
