"""convlens over HTTP: `convlens serve` (FastAPI + uvicorn), API keys, a web page.

    from convlens.service import ServiceConfig, create_app
    app = create_app(ServiceConfig(db="staff.db", keys="keys.db"))   # any ASGI server

Routes are thin shells over convlens.faces and convlens.style; see docs/service/README.md.
"""

from convlens.service.app import create_app
from convlens.service.config import ServiceConfig

__all__ = ["ServiceConfig", "create_app"]
