"""A hostile peer hub, in its own process: the real transport (it opens the puller's encrypted,
signed requests and seals its answers with its hub identity, like a hub), but its answer to a
SyncPullRequest is a page built to hurt the puller.

    python -m tests.support.hostile_peer IDENTITY_DIR MODE COMMIT_JSON_FILE

prints `PORT <n>` once it listens on 127.0.0.1 and serves until killed. MODE:

* ``oversized``: copies of the commit (seqs 1, 2, …) in one page, whatever the limit, 7 MiB
  of JSON (about 12.5 MiB encrypted: under the 16 MiB a HubClient reads by default, over the
  8 MiB of sync_max_page_bytes);
* ``too_many``: `limit + 1` commits (a page over the count cap, small in bytes);
* ``many``: as many commits as fit 4.3 MiB of JSON (7.7 MiB encrypted: just under the 8 MiB of
  sync_max_page_bytes, the most a puller parses);
* ``deep``: a page whose `commits` is a list nested 100,000 levels deep.

Its own memory is its own: the puller's process only pays for what it reads.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import sys
from typing import Any

from aiohttp import web

from identity_hub.auth.envelope import (
    KeyRing,
    issue_token,
    open_request,
    seal_response,
    verify_token,
)
from identity_hub.crypto import Limits
from identity_hub.did import DidResolver, ResolverConfig
from identity_hub.errors import AuthenticationFailed
from identity_hub.identity import HubIdentity

DEPTH = 100_000
OVERSIZED = 7 * 1024 * 1024
MANY = 43 * 1024 * 1024 // 10


def page(mode: str, request: dict[str, Any], commit: dict[str, Any]) -> bytes:
    """The hostile SyncPullResponse text for `request` (built as text: `deep` cannot be a dict
    json.dumps could write)."""
    if mode == "deep":
        return (b'{"@type":"SyncPullResponse","last_seq":1,"commits":' + b"[" * DEPTH
                + b"]" * DEPTH + b"}")
    item = json.dumps(commit, separators=(",", ":"))
    sizes = {"oversized": OVERSIZED, "many": MANY}
    count = (sizes[mode] // (len(item) + 24) if mode in sizes
             else int(request["query"]["limit"]) + 1)
    items = ",".join(f'{{"seq":{i},"commit":{item}}}' for i in range(1, count + 1))
    return (f'{{"@type":"SyncPullResponse","last_seq":{count},"commits":[{items}]}}'
            .encode())


async def main() -> None:
    identity_dir, mode, commit_file = sys.argv[1:4]
    identity = HubIdentity.load(pathlib.Path(identity_dir))
    commit = json.loads(pathlib.Path(commit_file).read_text())
    keys = KeyRing(identity)
    resolver = DidResolver(ResolverConfig())
    resolver.add_static(identity.static_document())
    limits = Limits(max_token_bytes=1 << 20, max_plaintext=1 << 20)

    async def endpoint(request: web.Request) -> web.Response:
        try:
            opened = await open_request(await request.read(), keys, resolver, limits)
            if opened.token is None:
                payload = issue_token(keys, opened, identity.did, 300).encode("ascii")
            else:
                verify_token(opened.token, keys, opened.requester, identity.did)
                body = json.loads(opened.payload)
                if body.get("@type") == "SyncPullRequest":
                    payload = page(mode, body, commit)
                else:
                    payload = json.dumps({"@type": "SyncHintResponse", "accepted": False}
                                         ).encode()
            sealed = await seal_response(payload, opened, keys, resolver, False)
        except AuthenticationFailed:
            return web.Response(status=401)
        return web.Response(body=sealed, content_type="application/jwt")

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post("/.identity", endpoint)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
