"""``/archive/``: the sent issues, their web versions and their images."""

from __future__ import annotations

from flask import Blueprint, Response, send_file
from werkzeug.exceptions import NotFound

from newsletter.web.pages import context, page

blueprint = Blueprint("archive", __name__)
CACHE_SECONDS = 300  # archive pages change rarely; images even less


@blueprint.get("/archive/")
def index() -> Response:
    return cached(page("archive-index.html.j2", entries=context().archive.entries()))


@blueprint.get("/archive/<slug>/")
def issue(slug: str) -> Response:
    found = context().archive.page(slug)
    if found is None:
        raise NotFound()
    return cached(Response(found.html, mimetype="text/html"))


@blueprint.get("/archive/<slug>/<path:name>")
def asset(slug: str, name: str) -> Response:
    path = context().archive.asset(slug, name)
    if path is None:
        raise NotFound()
    return send_file(path, max_age=CACHE_SECONDS * 12)


def cached(response: Response) -> Response:
    # A response that sets the reader's language cookie is theirs alone: no shared cache.
    scope = "private" if "Set-Cookie" in response.headers else "public"
    response.headers["Cache-Control"] = f"{scope}, max-age={CACHE_SECONDS}"
    return response
