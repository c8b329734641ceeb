"""The floors of the HTTP figures: bare Starlette routes doing only the work the contract makes
unavoidable, served with the server settings of ``hook-service serve``.

* ``/`` (GET or POST): a small constant JSON, the old floor (kept for continuity);
* ``/signed`` (POST): reads the body and verifies its ``X-Webhook-Signature`` (RSASSA-PSS
  SHA-256, MGF1-SHA-256, any salt length: contract 2.3) with ``cryptography`` against the key
  the ``X-Webhook-Signature-Key-Id`` names in ``HOOK_PRELUDE_JWKS_FILE``, then answers a
  constant JSON; a signature that does not verify answers 401, so the run fails loudly;
* ``/signing`` (POST): reads the body, signs a fixed 300-byte payload with RS256 (RSA-2048
  PKCS#1 v1.5 SHA-256, the key made once at start-up) and answers it;
* ``/signing-ed25519`` (POST): the same plus one Ed25519 verification of a fixed signature,
  the floor of the ``challenge_token`` form (its EdDSA signature is verified too).

``python -m bench.bare_app`` serves them as ``serve`` serves the service, with one worker:
:func:`hook_service.server.uvicorn_config` (the bounded protocol classes, the read timeout and
connection cap, the log config), the same listener and open-file set-up, all from the same
``HOOK_*`` variables. Only the app differs.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SIGNING_PAYLOAD_BYTES = 300  # about the size of a verification token's signing input
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
_PREFIX = "rsassa-pss-sha256="
_OK = {"status": "ok"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _rsa_keys(path: Path | None) -> dict[str, Any]:
    """The RSA public keys of a JWKS file by kid (none without a file)."""
    if path is None:
        return {}
    document = json.loads(path.read_text(encoding="utf-8"))
    return {
        jwk["kid"]: RSAAlgorithm.from_jwk(jwk) for jwk in document["keys"] if jwk["kty"] == "RSA"
    }


class Floors:
    """The keys the floor routes use, made or loaded once."""

    def __init__(self, jwks_file: Path | None) -> None:
        self.prelude = _rsa_keys(jwks_file)
        self.signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        header = _b64url(b'{"alg":"RS256","typ":"JWT","kid":"floor"}')
        payload = "x" * (SIGNING_PAYLOAD_BYTES - len(header) - 1)
        self.signing_input = f"{header}.{payload}".encode()
        challenge = ed25519.Ed25519PrivateKey.generate()
        self.challenge = self.signing_input
        self.challenge_signature = challenge.sign(self.challenge)
        self.challenge_key = challenge.public_key()

    def sign(self) -> str:
        signature = self.signer.sign(self.signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{self.signing_input.decode()}.{_b64url(signature)}"

    def verify_challenge(self) -> None:
        self.challenge_key.verify(self.challenge_signature, self.challenge)

    def verify_hook(self, body: bytes, header: str | None, kid: str | None) -> bool:
        key = self.prelude.get(kid or "")
        if key is None or header is None:
            return False
        encoded = header.removeprefix(_PREFIX)
        try:
            signature = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            key.verify(signature, body, _PSS, hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True


def build(jwks_file: Path | None) -> Starlette:
    floors = Floors(jwks_file)

    async def bare(request: Request) -> Response:
        return JSONResponse(_OK)

    async def signed(request: Request) -> Response:
        body = await request.body()
        headers = request.headers
        if not floors.verify_hook(
            body, headers.get("x-webhook-signature"), headers.get("x-webhook-signature-key-id")
        ):
            return JSONResponse({"error": "invalid_signature"}, status_code=401)
        return JSONResponse(_OK)

    async def signing(request: Request) -> Response:
        await request.body()
        return JSONResponse({"verification_token": floors.sign()})

    async def signing_ed25519(request: Request) -> Response:
        await request.body()
        floors.verify_challenge()
        return JSONResponse({"verification_token": floors.sign()})

    app = Starlette(
        routes=[
            Route("/", bare, methods=["GET", "POST"]),
            Route("/signed", signed, methods=["POST"]),
            Route("/signing", signing, methods=["POST"]),
            Route("/signing-ed25519", signing_ed25519, methods=["POST"]),
        ]
    )
    app.state.floors = floors
    return app


def main() -> None:
    """Serve the floors like ``hook-service serve`` with one worker (server.serve's path)."""
    from uvicorn import Server

    from hook_service.logs import configure_logging
    from hook_service.server import ensure_open_files, listeners, uvicorn_config
    from hook_service.settings import Settings

    settings = Settings.from_env().replace(workers=1)
    configure_logging(settings)
    ensure_open_files(settings)
    config = uvicorn_config(settings, build(settings.prelude_jwks_file))
    sockets = listeners(settings)
    try:
        Server(config).run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()


if __name__ == "__main__":
    main()
