"""The dashboard's routers, one per concern; `dashboard.web.app.create_app` includes them.

`LAB_ROUTERS` serve one lab each (included at the top for the default lab and under `/labs/{lab_id}` for the
others); `SITE_ROUTERS` serve the whole site once (manifests, API docs, health, the workshop's rooms).
"""

from __future__ import annotations

from dashboard.web.routes import drills, guestbook, live, observe, pages, preflight, replication, steps, workshop

LAB_ROUTERS = (
    steps.router,
    drills.router,
    replication.router,
    observe.router,
    guestbook.router,
    preflight.router,
    pages.router,
    live.router,
)
SITE_ROUTERS = (pages.site_router, workshop.router)
