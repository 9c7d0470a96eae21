"""What the service says to bytes that are not HTTP: uvicorn answers a request its parser refuses (a
malformed request line or header, before any application code runs) with its own plain-text 400; this
h11 protocol answers it with the same problem body (RFC 9457) as every other refusal, and closes the
connection. `promo serve` runs uvicorn with it (`http=PROTOCOL`), so the service always speaks h11
(httptools, when installed, is not used). It depends on uvicorn's `send_400_response`, hence the
`uvicorn<1` pin; tests/test_service.py sends garbage over a socket to check it.
"""
from __future__ import annotations

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .problems import MEDIA_TYPE, ServiceError

PROTOCOL = "engine.service.wire:ProblemH11Protocol"


class ProblemH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        body = ServiceError("malformed_http", "the request is not valid HTTP/1.1; nothing was read").to_json()
        headers = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        try:
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                          h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:   # the connection is past sending a response: just close it
            pass
        self.transport.close()
