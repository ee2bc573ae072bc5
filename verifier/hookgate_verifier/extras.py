"""Optional dependencies: the error raised when a feature's extra is not installed."""

from __future__ import annotations

__all__ = ["MissingExtra"]


class MissingExtra(ImportError):
    """A feature needs an optional extra that is not installed; the message says what to run."""

    def __init__(self, feature: str, extra: str) -> None:
        self.extra = extra
        super().__init__(
            f"{feature} needs the [{extra}] extra: pip install 'hookgate-verifier[{extra}]' "
            f"(from a hookgate checkout: pip install './verifier[{extra}]')"
        )
