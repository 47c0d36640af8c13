"""The `measured` role of the book (`_config.yml: sphinx.extra_extensions`): a benchmark's number in prose.

{measured}`rome_leakage:layers.5.with_c|.2f` is replaced by the value that `bench/results/rome_leakage.json`
holds (`e2u.book.measured`), shown with its source and command on hover. A missing file or key is a build error
(the book builds with warnings as errors), so the chapters cannot quote a number no file holds.
"""

from __future__ import annotations

from pathlib import Path

from docutils import nodes

from e2u.book.measured import measured_value
from e2u.errors import E2UError


def measured_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    root = Path(inliner.document.settings.env.srcdir)
    try:
        value, source = measured_value(root, text)
    except E2UError as exc:
        message = inliner.reporter.error(str(exc), line=lineno)
        return [inliner.problematic(rawtext, rawtext, message)], [message]
    return [nodes.abbreviation(value, value, explanation=source, classes=["measured"])], []


def setup(app):
    app.add_role("measured", measured_role)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
