"""Webhooks (issue 14, an API extension): create, list, read and delete a project's webhooks,
their deliveries, a re-send of one delivery and a replay from an event id.

Managing them (POST, DELETE) needs the admin role (the Delete permission): a webhook sends every
event of the project to an outside address. Reading needs Read (an observer).
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, RawBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from cloudbackup.api.auth import NEEDS_DELETE
from cloudbackup.api.call import Call
from cloudbackup.api.controllers.events import event_marker
from cloudbackup.api.paging import Paging, paged_list
from cloudbackup.api.schemas.webhooks import (
    DeliveryOut,
    WebhookOut,
    delivery_out,
    parse_create,
    parse_replay,
    replay_out,
    webhook_out,
)
from cloudbackup.domain.webhooks import WebhookService

Webhooks = NamedDependency[WebhookService]


class WebhookController(Controller):
    path = "/v2/{project_id:str}/webhooks"

    @post("/", status_code=HTTP_201_CREATED, sync_to_thread=True, opt=NEEDS_DELETE)
    def create_webhook(self, call: Call, body: RawBody, webhooks: Webhooks) -> Response[WebhookOut]:
        draft = parse_create(call.request, body, allow_private=webhooks.allow_private)
        row = webhooks.create(call.project_id, draft)
        return call.created(webhook_out(row, call.links, with_secret=True), "webhooks", row.id)

    @get("/", sync_to_thread=True)
    def list_webhooks(self, call: Call, webhooks: Webhooks) -> dict[str, Any]:
        rows = webhooks.list_project(call.project_id)
        return {"webhooks": [webhook_out(r, call.links) for r in rows]}

    @get("/{webhook_id:str}", sync_to_thread=True)
    def get_webhook(self, call: Call, webhook_id: FromPath[str], webhooks: Webhooks) -> WebhookOut:
        return webhook_out(webhooks.get(call.project_id, webhook_id), call.links)

    @delete(
        "/{webhook_id:str}", status_code=HTTP_204_NO_CONTENT, sync_to_thread=True, opt=NEEDS_DELETE
    )
    def delete_webhook(self, call: Call, webhook_id: FromPath[str], webhooks: Webhooks) -> None:
        webhooks.delete(call.project_id, webhook_id)

    @get("/{webhook_id:str}/deliveries", sync_to_thread=True)
    def list_deliveries(
        self, call: Call, webhook_id: FromPath[str], webhooks: Webhooks, paging: Paging
    ) -> dict[str, Any]:
        """Newest first; each delivery with every attempt (time, status, code, next try)."""
        marker = event_marker(paging.marker) if paging.marker is not None else None
        items, links = paged_list(
            call,
            ("webhooks", webhook_id, "deliveries"),
            lambda size, order: webhooks.deliveries(
                call.project_id, webhook_id, marker=marker, limit=size, sort_dir=order
            ),
            lambda view, _: delivery_out(view),
            paging,
        )
        return {"deliveries": items, "links": links}

    @post(
        "/{webhook_id:str}/deliveries/{delivery_id:str}/retries",
        status_code=HTTP_202_ACCEPTED,
        sync_to_thread=True,
        opt=NEEDS_DELETE,
    )
    def resend_delivery(
        self, call: Call, webhook_id: FromPath[str], delivery_id: FromPath[str], webhooks: Webhooks
    ) -> Response[DeliveryOut]:
        view = webhooks.resend(call.project_id, webhook_id, delivery_id)
        return Response(delivery_out(view), status_code=HTTP_202_ACCEPTED)

    @post(
        "/{webhook_id:str}/replays",
        status_code=HTTP_202_ACCEPTED,
        sync_to_thread=True,
        opt=NEEDS_DELETE,
    )
    def replay_webhook(
        self, call: Call, webhook_id: FromPath[str], body: RawBody, webhooks: Webhooks
    ) -> Response[dict[str, Any]]:
        from_event_id = parse_replay(call.request, body)
        replay = webhooks.replay(call.project_id, webhook_id, from_event_id)
        return Response(replay_out(replay), status_code=HTTP_202_ACCEPTED)
