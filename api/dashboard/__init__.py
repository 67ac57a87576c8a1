"""The operators' dashboard: stats, checkouts, tasks and (in dev) the mailbox, as server-side HTML.

Pages need an API key with the read scope, pasted once into a login form and kept, encrypted, in a
session cookie; nothing runs JavaScript, and nothing is fetched from outside the service.
"""

from api.dashboard.config import DashboardConfig
from api.dashboard.routes import dashboard_router

__all__ = ["DashboardConfig", "dashboard_router"]
