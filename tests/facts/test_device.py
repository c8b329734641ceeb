"""Device keys (issue 11 point 1): a browser update is the same device, another OS is not."""

from __future__ import annotations

from tests.facts.support import (
    CHROME_130_WIN,
    CHROME_131_MAC,
    CHROME_131_WIN,
    FIREFOX_WIN,
    KEY,
    SAFARI_IOS_17,
    device_keys,
)

CHROME_140_WIN = CHROME_130_WIN.replace("Chrome/130.0.0.0", "Chrome/140.0.7339.81")
SAFARI_IOS_18 = SAFARI_IOS_17.replace("17_5", "18_1").replace("Version/17.5", "Version/18.1")


def test_a_browser_update_is_the_same_device() -> None:
    keys = device_keys()
    same = {keys.key(ua, "WEB") for ua in (CHROME_130_WIN, CHROME_131_WIN, CHROME_140_WIN)}
    assert len(same) == 1 and None not in same


def test_another_os_browser_or_platform_is_another_device() -> None:
    keys = device_keys()
    found = [
        keys.key(CHROME_131_WIN, "WEB"),
        keys.key(CHROME_131_MAC, "WEB"),
        keys.key(FIREFOX_WIN, "WEB"),
        keys.key(CHROME_131_WIN, "ANDROID"),
        keys.key(SAFARI_IOS_17, "IOS"),
        keys.key(SAFARI_IOS_18, "IOS"),  # an OS major update
    ]
    assert len(set(found)) == len(found)


def test_the_platform_is_normalised() -> None:
    keys = device_keys()
    assert keys.key(CHROME_130_WIN, " web ") == keys.key(CHROME_130_WIN, "WEB")
    assert keys.key(CHROME_130_WIN, None) == keys.key(CHROME_130_WIN, 42)


def test_no_user_agent_is_no_device() -> None:
    keys = device_keys()
    for missing in (None, "", "   ", 17, ["Mozilla"]):
        assert keys.key(missing, "WEB") is None


def test_unrecognised_user_agents_stay_apart() -> None:
    keys = device_keys()
    first, second = keys.key("acme-client/1", "WEB"), keys.key("other thing", "WEB")
    assert first is not None and second is not None and first != second
    long = "x" * 5000
    assert keys.key(long, "WEB") == keys.key(long + "tail", "WEB")  # parsed up to 1024 chars


def test_device_hashes_are_keyed_and_hide_the_user_agent() -> None:
    key = device_keys().key(CHROME_130_WIN, "WEB")
    assert key is not None
    digest = KEY.device(key)
    assert len(digest) == 16 and "Chrome" not in digest  # 96 bits, unpadded base64url
