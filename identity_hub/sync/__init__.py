"""Replication between an owner's hubs (docs/replication.md).

* `tables`: the peers of each owner with their cursors, and parked commits;
* `peers`: the local administration of peers, cursors and parked commits (SQL);
* `trust`: which peer hub may pull an owner's commits (a HubSync grant from the owner);
* `protocol`: the SyncPullRequest / SyncHintRequest messages, both sides;
* `receiver`: verify and store one replicated commit through `commits.service`;
* `puller`: pull a peer's pages after the per-peer cursor;
* `service`: the background task: push hints after writes, anti-entropy rounds, backoff.

`sync` sits beside `interfaces`: it uses `commits`, `storage`, `permissions` and `did`, never
`transport`; it reaches peers through `identity_hub.client.HubClient` with the hub's own keys.
"""
