"""What a service hands on: work to enqueue once its transaction has committed."""

from __future__ import annotations

from dataclasses import dataclass, field

from renewals.domain.work import Work


@dataclass
class FollowUps:
    """Ids of work, by kind, for the task of that kind (``renewals.services.work``)."""

    work: list[tuple[Work, int]] = field(default_factory=list)

    def add(self, kind: Work, item_id: int | None) -> None:
        """Hand ``item_id`` on; None (an email already queued before) is skipped."""
        if item_id is not None:
            self.work.append((kind, item_id))

    def ids(self, kind: Work) -> list[int]:
        return [item_id for work, item_id in self.work if work is kind]
