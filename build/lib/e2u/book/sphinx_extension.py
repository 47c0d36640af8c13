"""A Sphinx extension for the book's build (`_config.yml: sphinx.extra_extensions`): what the reader's browser
should not be sent.

Jupyter Book loads sphinx-thebe (live code cells), and in this build its page script is written twice into
every page; the second copy redeclares `THEBE_JS_URL` and the browser reports an error on every page. The book's
notebooks are executed by papermill and never in the browser, so thebe's scripts are left out altogether.
"""

from __future__ import annotations


def setup(app):
    import sphinx_thebe  # present only inside the book's Sphinx build

    listeners = app.events.listeners.get("env-before-read-docs", [])
    for listener in list(listeners):
        if listener.handler is sphinx_thebe.init_thebe_core:
            app.disconnect(listener.id)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
