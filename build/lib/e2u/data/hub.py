"""Rows of one Hugging Face hub data set config, with an unreachable hub reported as a pointer to `data.path`.

Every hub source (TOFU, its factual sets, PISTOL) reads through `hub_rows`; tests exercise the same
sources through local files of the hub's format, since nothing can be downloaded at run time here.
"""

from __future__ import annotations

from e2u.errors import E2UError


def hub_rows(dataset: str, config: str, split: str = "train", local_hint: str = "a local copy") -> list[tuple[str, dict]]:
    """(where, row) for every row of `dataset`/`config`; `local_hint` says what `data.path` should hold."""
    try:
        import datasets
    except ImportError:
        raise E2UError(f"reading {dataset} from the hub needs the `datasets` package; install it or set data.path "
                       f"to {local_hint}") from None
    try:
        table = datasets.load_dataset(dataset, config, split=split)
    except network_errors() as exc:
        raise E2UError(f"could not reach the Hugging Face hub for {dataset} config {config!r} "
                       f"({type(exc).__name__}); set data.path to {local_hint} instead") from exc
    except Exception as exc:  # datasets' own errors (unknown config, bad cache) become one line
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise E2UError(f"could not load {dataset} config {config!r} from the hub: "
                       f"{type(exc).__name__}: {first_line}") from exc
    return [(f"{dataset}/{config} row {i}", dict(row)) for i, row in enumerate(table)]


def network_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "the hub cannot be reached" (offline mode, DNS, timeouts)."""
    # datasets' own OfflineModeIsEnabled, and its "Couldn't reach ... on the Hub", are ConnectionErrors
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
        errors += [LocalEntryNotFoundError, OfflineModeIsEnabled]
    except ImportError:
        pass
    try:
        import requests
        errors += [requests.ConnectionError, requests.Timeout]
    except ImportError:
        pass
    try:
        import httpx
        errors += [httpx.TransportError]
    except ImportError:
        pass
    return tuple(errors)
