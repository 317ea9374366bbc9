"""The web page: the chat at `/` and the admin pages at `/admin`, served from static files.

No build step and no CDN: the HTML, CSS and JavaScript modules under `static/` are what the
browser gets (the libraries they use are vendored in `static/vendor/`, see its README). The
page talks to the same REST API as any client, with the bearer token from `/auth/token`
(docs/web.md says why not a cookie).
"""

from api.web.routes import install_web

__all__ = ["install_web"]
