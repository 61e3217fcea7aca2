"""Owned resources: anything with ``close()`` is also a context manager."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Resource:
    """Mixin: ``with thing: ...`` closes ``thing`` on exit. Subclasses define ``close()``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
