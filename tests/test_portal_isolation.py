"""A merchant's portal session cannot tell another business's objects from ones that do not
exist: on every portal route that takes an id, the answer for another business's id is byte
for byte the answer for an unknown id of the same kind, apart from the id itself (issue 12,
defect 7)."""

from __future__ import annotations

from typing import Any

from aiohttp import ClientResponse
from support import AUTH
from test_portal import (
    Client,
    MakeReceiver,
    Start,
    csrf_of,
    endpoint,
    event,
    fresh_client,
    open_link,
    portal_link,
    settled,
    text,
)

from gateway.core.ids import new_id
from gateway.core.settings import Settings


def unknown(kind: str) -> str:
    """A well-formed id of ``kind`` that names nothing."""
    if kind == "dlv":
        return "dlv_" + new_id("evt").split("_", 1)[1] + "1"
    return new_id(kind)


async def shape(resp: ClientResponse, mine: str) -> tuple[int, str, str, str]:
    """What a caller can observe, with the id it sent replaced."""
    body = (await resp.text()).replace(mine, "ID")
    headers = {k.lower(): v for k, v in resp.headers.items()}
    kept = ("content-type", "cache-control", "content-security-policy")
    return resp.status, body, str([headers.get(k) for k in kept]), headers.get("location", "")


async def test_another_business_ids_answer_exactly_like_unknown_ids(
    api: Client, receiver: MakeReceiver, start_worker: Start, settings: Settings
) -> None:
    target = await receiver()
    theirs = await endpoint(api, target.url, "bus_b")
    gone = await endpoint(api, target.url, "bus_b")
    their_event = await event(api, "bus_b")
    await start_worker(settings)
    their_delivery = (await settled(api, their_event["deliveries"][0]))["id"]
    replays = []
    for ep in (theirs, gone):
        resp = await api.post(
            f"/v1/endpoints/{ep['id']}/replay", json={"since": "1h", "status": "all"}, headers=AUTH
        )
        assert resp.status == 202, await resp.text()
        replays.append((await resp.json())["replay_id"])
    their_replay, orphan_replay = replays
    # A replay whose endpoint was deleted since: nobody's to show, and it must not say whose.
    assert (await api.delete(f"/v1/endpoints/{gone['id']}", headers=AUTH)).status == 204

    merchant = await fresh_client(api)
    try:
        await open_link(merchant, await portal_link(api, "bus_a"))
        csrf = csrf_of(await text(await merchant.get("/portal/endpoints")))
        gets = [
            ("ep", theirs["id"], "/portal/endpoints/{}"),
            ("ep", gone["id"], "/portal/endpoints/{}"),
            ("dlv", their_delivery, "/portal/deliveries/{}"),
            ("evt", their_event["id"], "/portal/events/{}"),
            ("evt", their_event["id"], "/portal/events?id={}"),
            ("ep", theirs["id"], "/portal/deliveries?endpoint_id={}"),
            ("ep", theirs["id"], "/portal/recover?endpoint_id={}&since=1h"),
            ("rpl", their_replay, "/portal/replays/{}"),
            ("rpl", their_replay, "/portal/replays/{}/progress"),
            ("rpl", orphan_replay, "/portal/replays/{}"),
            ("rpl", orphan_replay, "/portal/replays/{}/progress"),
        ]
        for kind, real, path in gets:
            other = unknown(kind)
            seen = await shape(await merchant.get(path.format(real)), real)
            missing = await shape(await merchant.get(path.format(other)), other)
            assert seen == missing, path
            assert seen[0] == 404, path
            assert "bus_b" not in seen[1] and theirs["id"] not in seen[1], path
            assert gone["id"] not in seen[1], path
        posts: list[tuple[str, str, str, dict[str, Any]]] = [
            ("ep", theirs["id"], "/portal/endpoints/{}/disable", {}),
            ("ep", theirs["id"], "/portal/endpoints/{}/enable", {}),
            ("ep", theirs["id"], "/portal/endpoints/{}/rotate-secret", {}),
            ("ep", theirs["id"], "/portal/endpoints/{}/test", {}),
            ("dlv", their_delivery, "/portal/deliveries/{}/replay", {}),
            ("ep", theirs["id"], "/portal/recover", {"endpoint_id": "{}", "since": "1h"}),
        ]
        for kind, real, path, form in posts:
            other = unknown(kind)
            answers = []
            for given in (real, other):
                data = {"csrf": csrf, **{k: v.format(given) for k, v in form.items()}}
                resp = await merchant.post(path.format(given), data=data, allow_redirects=False)
                answers.append(await shape(resp, given))
            assert answers[0] == answers[1], path
            assert answers[0][0] == 404, path
        after = await (await api.get(f"/v1/endpoints/{theirs['id']}", headers=AUTH)).json()
        assert not after["disabled"] and after["secret_count"] == 1
    finally:
        await merchant.close()
