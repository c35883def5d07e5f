"""``/archive/``: the sent issues, their web versions (one per language) and their images."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, redirect, send_file, url_for
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import NotFound
from werkzeug.routing import BaseConverter

from newsletter.web.archive import Page
from newsletter.web.pages import context, page

blueprint = Blueprint("archive", __name__)
CACHE_SECONDS = 300  # archive pages change rarely; images even less


class LanguageConverter(BaseConverter):
    """A BCP 47 tag as ``issue.<lang>.md`` names it. Without this shape a plain segment would
    also claim ``/archive/<slug>/photo.png`` and send it to ``photo.png/``."""

    regex = r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*"  # as content.TRANSLATION_RE reads file names


@blueprint.record_once
def _add_converter(state: BlueprintSetupState) -> None:  # before the rules below are added
    state.app.url_map.converters["language"] = LanguageConverter


@blueprint.get("/archive/")
def index() -> Response:
    return cached(page("archive-index.html.j2", entries=context().archive.entries()))


@blueprint.get("/archive/<slug>/")
def issue(slug: str) -> Response:
    return version_page(context().archive.page(slug))


@blueprint.get("/archive/<slug>/<language:language>/")
def version(slug: str, language: str) -> Any:
    if language == context().settings.language:  # the original has the issue's own address
        return redirect(url_for("archive.issue", slug=slug), 308)
    return version_page(context().archive.page(slug, language))


@blueprint.get("/archive/<slug>/<path:name>")
def asset(slug: str, name: str) -> Response:
    path = context().archive.asset(slug, name)
    if path is None:
        raise NotFound()
    return send_file(path, max_age=CACHE_SECONDS * 12)


def version_page(found: Page | None) -> Response:
    """An issue's page in one language: the same for every reader, whatever their page language
    (a page in another language is another address)."""
    if found is None:
        raise NotFound()
    response = Response(found.html, mimetype="text/html")
    if found.language:
        response.headers["Content-Language"] = found.language
    return cached(response)


def cached(response: Response) -> Response:
    # A response that sets the reader's language cookie is theirs alone: no shared cache.
    scope = "private" if "Set-Cookie" in response.headers else "public"
    response.headers["Cache-Control"] = f"{scope}, max-age={CACHE_SECONDS}"
    return response
