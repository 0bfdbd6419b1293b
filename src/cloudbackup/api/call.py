"""What a handler needs of the call besides its own parameters: the request (bodies are decoded
against its content type), the project and the project's links (OQ-2).

Every API route under ``/v2/{project_id}`` can take ``call: Call``; the app provides it once
(:data:`CALL`), so handlers declare only what is theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from litestar import MediaType, Request, Response
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, HeaderParameter, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED

from cloudbackup.api.links import LinkBuilder

T = TypeVar("T")
# The parameter types handlers share: a path segment, an optional query parameter, and the
# agent a caller says it reports for (documented; the guard checks it against the token).
Id = FromPath[str]
Query = Annotated[str | None, QueryParameter(required=False)]
AgentHeader = Annotated[str | None, HeaderParameter(name="X-Agent-Id", required=False)]


@dataclass(frozen=True, slots=True)
class ApiCall:
    request: Request[Any, Any, Any]
    project_id: str
    links: LinkBuilder

    def created(self, body: T, *location: str) -> Response[T]:
        """201 with ``body`` and the ``Location`` of the new resource at ``/{location}``."""
        return Response(
            body, status_code=HTTP_201_CREATED, headers={"Location": self.links.href(*location)}
        )

    def accepted(self, body: T, *location: str) -> Response[T]:
        """202 with ``body`` and the ``Location`` where its result will be (spec §2.7)."""
        return Response(
            body, status_code=HTTP_202_ACCEPTED, headers={"Location": self.links.href(*location)}
        )

    def accepted_empty(self, *location: str) -> Response[bytes]:
        """202 with no body and the ``Location`` of the result (browse requests)."""
        return Response(
            b"",
            status_code=HTTP_202_ACCEPTED,
            headers={"Location": self.links.href(*location)},
            media_type=MediaType.TEXT,
        )


def call_of(request: Request[Any, Any, Any], project_id: FromPath[str]) -> ApiCall:
    return ApiCall(request, project_id, LinkBuilder(request, project_id))


CALL = {"call": Provide(call_of, sync_to_thread=False)}
Call = NamedDependency[ApiCall]
