"""The trust policy: which publisher keys may publish which module names (pure).

A rule is a publisher key and a name pattern (``fnmatch`` glob: ``flocking``,
``team-a.*``, ``*``). A key may publish a name when one of its rules matches;
with no rule at all nobody may publish: the operator trusts each key
explicitly (``edgeswarm agents trust``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from edgeswarm.identity import fingerprint

from .errors import UntrustedPublisherError


@dataclass(frozen=True)
class TrustRule:
    """``publisher`` may publish modules whose name matches ``pattern``."""

    publisher: bytes
    """Raw ed25519 public key."""
    pattern: str
    """``fnmatch`` pattern of module names (case-sensitive)."""

    def allows(self, publisher: bytes, name: str) -> bool:
        return publisher == self.publisher and fnmatch.fnmatchcase(name, self.pattern)


@dataclass(frozen=True)
class TrustPolicy:
    """Every rule a registry holds."""

    rules: tuple[TrustRule, ...] = ()

    @classmethod
    def of(cls, rules: Iterable[TrustRule]) -> TrustPolicy:
        return cls(tuple(rules))

    def allows(self, publisher: bytes, name: str) -> bool:
        return any(rule.allows(publisher, name) for rule in self.rules)

    def check(self, publisher: bytes, name: str) -> None:
        """Raise :class:`UntrustedPublisherError` unless ``publisher`` may publish ``name``."""
        if not self.allows(publisher, name):
            raise UntrustedPublisherError(
                f"publisher {fingerprint(publisher)} may not publish {name!r}: "
                f"add a rule with `edgeswarm agents trust --public-key ... --names {name}`"
            )
