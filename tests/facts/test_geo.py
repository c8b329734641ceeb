"""Geo (issue 11 points 1 and 5): iptocc countries, an optional city database."""

from __future__ import annotations

from pathlib import Path

import pytest

from hook_service.errors import ConfigError
from hook_service.facts.geo import Geo, Place
from hook_service.facts.hashing import parse_ip
from tests.facts.support import (
    DUBLIN,
    DUBLIN_IP6,
    LONDON,
    LONDON_IP,
    MOUNTAIN_VIEW_IP,
    OTHER_IP,
    write_city_db,
)


def locate(geo: Geo, text: str) -> Place:
    address = parse_ip(text)
    assert address is not None
    return geo.locate(address)


def test_countries_come_from_iptocc_without_a_database() -> None:
    geo = Geo()
    assert not geo.has_cities
    assert locate(geo, LONDON_IP) == Place("GB")
    assert locate(geo, MOUNTAIN_VIEW_IP) == Place("US")
    assert locate(geo, "::ffff:8.8.8.8") == Place("US")


@pytest.mark.parametrize(
    "text", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "::1", "fe80::1", "192.0.2.7"]
)
def test_private_and_special_addresses_have_no_country(text: str) -> None:
    assert locate(Geo(), text) == Place("")


def test_a_city_database_gives_country_and_rounded_location(tmp_path: Path) -> None:
    geo = Geo(write_city_db(tmp_path / "cities.mmdb"))
    try:
        assert geo.has_cities
        assert locate(geo, LONDON_IP) == Place("GB", LONDON)  # 51.5142 -> 51.51
        assert locate(geo, DUBLIN_IP6) == Place("IE", DUBLIN)
        assert locate(geo, OTHER_IP) == Place("AU")  # not in the database: iptocc's country
        assert locate(geo, "10.0.0.1") == Place("")
    finally:
        geo.close()


def test_a_bad_database_names_the_variable(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"not a database")
    for path in (broken, tmp_path / "missing.mmdb"):
        with pytest.raises(ConfigError, match="HOOK_GEOIP_DB"):
            Geo(path)
