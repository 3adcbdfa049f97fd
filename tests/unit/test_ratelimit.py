"""The token buckets, their memory bound, the RATE/BURST settings and the source address."""

from __future__ import annotations

import time

import pytest

from identity_hub import ratelimit
from identity_hub.ratelimit import RateLimiter, Rule, parse_proxies, source_address
from identity_hub.settings import load_settings


def limiter(rate: float = 10.0, burst: float = 3.0, max_keys: int = 1000) -> RateLimiter:
    rules = {c: Rule(rate, burst) for c in ratelimit.CLASSES}
    trusted = {c: Rule(rate * 10, burst * 10) for c in ratelimit.CLASSES}
    return RateLimiter(rules, trusted, max_keys=max_keys)


def test_a_bucket_empties_refills_and_says_when() -> None:
    rl = limiter(rate=10.0, burst=3.0)
    keys = [("did", "did:ex:a")]
    assert [rl.check("write", keys) for _ in range(3)] == [None] * 3
    refusal = rl.check("write", keys)
    assert refusal is not None and refusal.retry_after == 1 and refusal.scope == "did"
    assert refusal.setting == "rate_limit_write"
    time.sleep(0.15)  # 1.5 tokens back at 10/s
    assert rl.check("write", keys) is None
    assert rl.check("write", [("did", "did:ex:b")]) is None  # another DID: its own bucket
    assert rl.check("query", keys) is None  # another class: its own bucket


def test_all_or_nothing_across_did_and_address() -> None:
    rl = limiter(burst=2.0)
    for _ in range(2):
        assert rl.check("write", [("did", "did:ex:a"), ("address", "192.0.2.1")]) is None
    refusal = rl.check("write", [("did", "did:ex:b"), ("address", "192.0.2.1")])
    assert refusal is not None and refusal.scope == "address"
    # the refused request took nothing from did:ex:b's bucket
    assert rl.check("write", [("did", "did:ex:b")]) is None
    assert rl.check("write", [("did", "did:ex:b")]) is None


def test_trusted_budget_is_separate_and_larger() -> None:
    rl = limiter(burst=1.0)
    keys = [("did", "did:ex:owner")]
    assert rl.check("write", keys) is None and rl.check("write", keys) is not None
    assert all(rl.check("write", keys, trusted=True) is None for _ in range(10))
    refusal = rl.check("write", keys, trusted=True)
    assert refusal is not None and refusal.setting == "rate_limit_trusted_write"


def test_automerge_seconds_are_charged_afterwards_and_may_go_into_debt() -> None:
    rl = limiter(rate=1.0, burst=2.0)
    keys = [("did", "did:ex:a")]
    assert rl.peek("automerge", keys) is None
    rl.charge("automerge", keys, 5.0)  # a 5 s fold on a 2 s budget
    refusal = rl.peek("automerge", keys)
    assert refusal is not None and refusal.retry_after >= 3  # the debt is paid back first


def test_memory_is_bounded_under_a_flood_of_keys() -> None:
    rl = limiter(max_keys=100)
    for i in range(10_000):
        rl.check("handshake", [("address", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")])
    assert len(rl) <= 100


def test_cpu_meter_counts_only_inside_a_request() -> None:
    ratelimit.spent(1.0)  # outside a request: nowhere to count, no error
    meter = ratelimit.CpuMeter()
    token = ratelimit.CPU_METER.set(meter)
    try:
        ratelimit.spent(0.25)
        ratelimit.spent(0.5)
    finally:
        ratelimit.CPU_METER.reset(token)
    assert meter.seconds == 0.75


@pytest.mark.parametrize("text", ["20", "a/b", "0/10", "10/-1", "inf/1", "1/2/3"])
def test_malformed_rules_name_the_setting(text: str) -> None:
    with pytest.raises(ValueError, match="rate_limit_write"):
        Rule.parse("rate_limit_write", text)


def test_settings_defaults_parse_and_bad_ones_are_refused(tmp_path: object) -> None:
    settings = load_settings({"data_dir": str(tmp_path)}, environ={})
    ratelimit.check_settings(settings)
    with pytest.raises(ValueError, match="rate_limit_query"):
        ratelimit.check_settings(settings.replace(rate_limit_query="fast"))
    with pytest.raises(ValueError, match="trusted_proxies"):
        ratelimit.check_settings(settings.replace(trusted_proxies="10.0.0.0/8, nope"))


def test_source_address() -> None:
    proxies = parse_proxies("10.0.0.0/8, 127.0.0.1, ::1")
    # no trusted proxies: the header is ignored
    assert source_address("192.0.2.9", "198.51.100.1", ()) == "192.0.2.9"
    # from an untrusted peer: ignored
    assert source_address("192.0.2.9", "198.51.100.1", proxies) == "192.0.2.9"
    # from a trusted proxy: the right-most hop that is not a trusted proxy
    assert source_address("127.0.0.1", "1.1.1.1, 198.51.100.1, 10.0.0.5", proxies) \
        == "198.51.100.1"
    # a malformed hop: nothing left of it is trusted
    assert source_address("127.0.0.1", "198.51.100.1, garbage", proxies) == "127.0.0.1"
    assert source_address("::1", "2001:db8::1", proxies) == "2001:db8::1"
    assert source_address(None, None, proxies) == "unknown"
