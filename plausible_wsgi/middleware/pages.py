"""What a request's target says (URL, host check, exclusion), worked out once per target.

Page URLs repeat, and building one means decoding, masking, escaping, scrubbing and
checking it: about 5 µs, against well under 1 µs for a dict lookup. So each middleware
remembers the recent targets (:class:`Pages`), bounded in count and length, and with
each target the decisions made for its requests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Container, Hashable
from typing import TYPE_CHECKING, Optional

from ..events import MAX_URL_BYTES, url_parses
from ..request import escape_path, fit_url
from .options import CheckedOptions

if TYPE_CHECKING:
    from .decision import Decision

__all__ = ["MEMO_MAX_LENGTH", "MEMO_SIZE", "Page", "Pages"]

#: Targets remembered per middleware, and the longest one remembered (``Host`` +
#: path + query, in characters): about 2 MB at most, whatever the traffic.
MEMO_SIZE = 1024
MEMO_MAX_LENGTH = 512
# Shorter URLs are below Plausible's 2000-byte limit whatever their characters.
_SHORT_URL = MAX_URL_BYTES // 4


@dataclasses.dataclass(frozen=True)
class Page:
    """What a request's target says, independent of the visitor.

    A frozen dataclass: its ``url`` and ``decisions`` are read on every request, and
    3.11 specialises a dataclass's field reads (a NamedTuple's cost ~220 instructions).
    """

    #: The decoded path before masking: what the path rules see.
    path: str
    #: The masked, escaped path as it appears in the URL.
    url_path: str
    #: The URL sent, or ``None`` when the scheme or ``Host`` is unusable.
    url: Optional[str]
    #: ``url`` splits cleanly (Plausible refuses those that do not).
    url_valid: bool
    #: The ``Host`` passes ``allowed_hosts``.
    host_ok: bool
    #: The path matches ``exclude_paths``.
    excluded: bool
    #: The path ends in one of ``download_extensions`` (with ``file_downloads``).
    download: bool
    #: The decisions made for requests to this target, by the rest of their facts
    #: (filled by :meth:`~.recorder.Recorder.decision`; they go when the page goes).
    decisions: dict[Hashable, Decision]


class Pages:
    """A bounded memo of :class:`Page` by request target.

    The key is whatever identifies the target for the caller (WSGI: scheme, ``Host``
    header, ``SCRIPT_NAME``, ``PATH_INFO``, query string); :meth:`remember` is told
    its length so that long targets are not kept.
    """

    __slots__ = ("_memo", "_options", "get")

    def __init__(self, options: CheckedOptions) -> None:
        self._options = options
        self._memo: dict[Hashable, Page] = {}
        #: ``get(key)``: the remembered page, or ``None``; raises TypeError for an
        #: unhashable key (a broken server's value). The dict's own method: it runs on
        #: every request.
        self.get: Callable[[Hashable], Optional[Page]] = self._memo.get

    def __len__(self) -> int:
        return len(self._memo)

    def targets(self) -> list[Hashable]:
        """The remembered keys, oldest first."""
        return list(self._memo)

    def remember(self, key: Hashable, page: Page, length: int) -> None:
        """Keep ``page`` unless the target is long; a full memo starts over (cheaper
        than LRU bookkeeping on every hit, and what repeats comes back soon)."""
        if length > MEMO_MAX_LENGTH:
            return
        memo = self._memo
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        memo[key] = page

    def build(self, scheme: object, host: str, path: str, query: object) -> Page:
        """The :class:`Page` of ``scheme://host/path?query``.

        :param host: validated ``host[:port]``, ``""`` when unusable.
        :param path: decoded (WSGI: :func:`~plausible_wsgi.request.decode_path`).
        :param query: the raw query string (percent-encoded, latin-1 text).
        """
        options = self._options
        rules = options.paths
        url_path = escape_path(rules.mask(path) if rules.masks else path)
        url: Optional[str] = None
        url_valid = host_ok = False
        if host and scheme in ("https", "http"):
            url = f"{scheme}://{host}{url_path}"
            query_start = -1
            if query and isinstance(query, str) and (query := options.query.scrub(query)):
                query_start = len(url)
                url = f"{url}?{query}"
            if len(url) > _SHORT_URL:
                url = fit_url(url, query_start)
            url_valid = url_parses(url)
            host_ok = options.host_allowed(host)
        return Page(
            path=path,
            url_path=url_path,
            url=url,
            url_valid=url_valid,
            host_ok=host_ok,
            excluded=bool(rules.prefixes or rules.patterns) and rules.excluded(path),
            download=options.file_downloads and _has_extension(path, options.download_extensions),
            decisions={},
        )


def _has_extension(path: str, extensions: Container[str]) -> bool:
    name = path.rpartition("/")[2]
    return "." in name and name.rpartition(".")[2].lower() in extensions
