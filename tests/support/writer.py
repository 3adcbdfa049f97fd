"""A writer process for durability and concurrency tests.

    python -m tests.support.writer DATA_DIR DB_URL IDENTITY_DIR OWNER_JWK_FILE COUNT TAG

Writes COUNT creates through the core API and prints each acknowledged revision on its own
line, flushed, as soon as the WriteResponse is in hand (i.e. after the database commit).
"""

from __future__ import annotations

import asyncio
import sys

from identity_hub.identity import HubIdentity
from identity_hub.runtime import open_runtime
from identity_hub.settings import load_settings
from tests.support.actors import Actor, playlist


async def main() -> None:
    data_dir, db_url, identity_dir, jwk_file, count, tag = sys.argv[1:7]
    owner = Actor.from_private_jwk("Ed25519", open(jwk_file).read())
    settings = load_settings({"data_dir": data_dir, "database_url": db_url,
                              "open_tenancy": True}, environ={})
    identity = HubIdentity.load(__import__("pathlib").Path(identity_dir))
    async with open_runtime(settings, identity=identity, migrate=False) as rt:
        for i in range(int(count)):
            commit = owner.commit(owner.did, payload=playlist(f"{tag}-{i}", i))
            resp = await rt.hub.handle(owner.did, owner.write(identity.did, commit))
            if resp.get("@type") != "WriteResponse":
                print(f"ERROR {resp}", flush=True)
                sys.exit(3)
            print(resp["revisions"][-1], flush=True)
        print("DONE", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
