"""Where an IP is: country always, city location with an optional database (issue 11 point 5).

Country from ``iptocc`` (RIR delegation data shipped in its wheel). With ``HOOK_GEOIP_DB``, a
MaxMind-format city database (GeoLite2-City, DB-IP City Lite) read with ``maxminddb`` gives
the country and (lat, lon), from which ``facts.travel_kmh`` is computed; iptocc still answers
for an address the database has no country for. Nothing is downloaded at run time.
Addresses that are not globally routable (private, loopback, link-local, documentation...)
have no place: country "".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import iptocc
import maxminddb
from maxminddb.errors import InvalidDatabaseError

from hook_service.errors import ConfigError
from hook_service.facts.hashing import IPAddress

# Coordinates are kept to 0.01 degree (about 1 km): city databases are not more precise, and
# what the service holds about a user is no more precise than what it needs.
COORDINATE_DIGITS: Final = 2


@dataclass(frozen=True, slots=True)
class Place:
    country: str = ""
    location: tuple[float, float] | None = None


NOWHERE: Final = Place()


def _country(value: Any) -> str:
    code = value.get("iso_code") if isinstance(value, dict) else None
    if isinstance(code, str) and len(code) == 2 and code.isascii() and code.isupper():
        return code
    return ""


def _location(value: Any) -> tuple[float, float] | None:
    if not isinstance(value, dict):
        return None
    lat, lon = value.get("latitude"), value.get("longitude")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lat, lon)):
        return None
    assert isinstance(lat, int | float) and isinstance(lon, int | float)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return round(float(lat), COORDINATE_DIGITS), round(float(lon), COORDINATE_DIGITS)


class Geo:
    """``locate(ip)``: the :class:`Place` of an address. ``city_db``: path of the optional
    city database, opened once (memory-mapped); a bad file is a :class:`ConfigError` naming
    ``variable``."""

    def __init__(self, city_db: str | Path | None = None, variable: str = "HOOK_GEOIP_DB") -> None:
        self._reader: maxminddb.Reader | None = None
        if city_db is not None:
            try:
                self._reader = maxminddb.open_database(str(city_db), maxminddb.MODE_MMAP)
            except (OSError, ValueError, InvalidDatabaseError) as exc:
                raise ConfigError(
                    f"{variable}: cannot read the city database {str(city_db)!r}: {exc}"
                ) from None

    @property
    def has_cities(self) -> bool:
        """Whether a city database is configured (else ``travel_kmh`` is always -1)."""
        return self._reader is not None

    def locate(self, address: IPAddress) -> Place:
        if not address.is_global:
            return NOWHERE
        country, location = "", None
        if self._reader is not None:
            try:
                record = self._reader.get(address)
            except ValueError:  # an IPv6 address in an IPv4-only database
                record = None
            if isinstance(record, dict):
                country = _country(record.get("country"))
                location = _location(record.get("location"))
        if not country:
            country = iptocc.country_code(str(address)) or ""
        return Place(country, location)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
