"""Activity rendering (spec §11.1): field order as the spec's table."""

from __future__ import annotations

import msgspec

from cloudbackup.api.links import LinkBuilder
from cloudbackup.api.schemas.common import Link, Ref
from cloudbackup.api.schemas.times import iso_z
from cloudbackup.domain.activities import Activity

COLLECTION_OF = {"backup": "backups", "restore": "restores", "cleanup": "cleanups"}


class ActivityOut(msgspec.Struct, omit_defaults=True):
    id: str
    type: str
    last_updated_time: str | None
    state: str
    agent: Ref
    configuration: Ref | msgspec.UnsetType = msgspec.UNSET  # cleanups have none
    links: list[Link] = msgspec.field(default_factory=list)


class ActivityList(msgspec.Struct):
    activities: list[ActivityOut]
    links: list[Link]


def activity_out(item: Activity, links: LinkBuilder) -> ActivityOut:
    collection = COLLECTION_OF[item.type]
    return ActivityOut(
        id=item.id,
        type=item.type,
        last_updated_time=iso_z(item.last_updated_time),
        state=item.state,
        agent=links.ref("agents", item.agent_id),
        configuration=msgspec.UNSET
        if item.configuration_id is None
        else links.ref("configurations", item.configuration_id),
        links=[links.link(item.type, collection, item.id)],
    )
