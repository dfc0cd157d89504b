"""The baselines of bench/api.py: bare Starlette endpoints under the same uvicorn, with no
database behind them, answering a body the size and shape of one item valuation (/bare/{id})
or of a bulk answer of 100 valuations (/bare-bulk, rendered once: only its bytes are sent)."""

import json

from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

BODY = {
    "item_id": "7804", "fair_value": 4210.5, "currency": "ETH", "band": {"p10": 3100.0, "p90": 5600.0},
    "signal": "HOLD", "last_sale": {"price": 4200.0, "timestamp": "2021-03-11T00:00:00Z"},
    "snapshot": {"id": 1, "as_of": "2021-12-31T00:00:00Z", "published_at": "2021-12-31T00:00:01Z"},
    "model_version": 1, "collection": "cryptopunks", "type": "Alien",
    "attributes": {"accessory_count": 4, "accessories": ["Cap Forward", "Pipe", "Small Shades"]},
}


VALUATION = {
    "fair_value": 95.4321, "currency": "ETH", "band": {"p10": 71.2345, "p90": 136.789}, "signal": "HOLD",
    "deviation": -0.04567, "ask": None, "last_sale": {"price": 88.0, "timestamp": "2021-11-26T01:00:00Z"},
    "snapshot": {"id": 1, "as_of": "2026-12-05T18:34:07.831891Z", "valued_at": "2022-01-08T00:00:00Z",
                 "published_at": "2026-12-05T18:34:08.742305Z"},
    "model_version": 1,
}
BULK_BODY = json.dumps({
    "collection": "cryptopunks", "snapshot": VALUATION["snapshot"],
    "valuations": [{"item_id": str(i * 97), **VALUATION} for i in range(100)], "not_found": [],
}, separators=(",", ":")).encode()


async def item(request):
    return JSONResponse(BODY)


async def bulk(request):
    return Response(BULK_BODY, media_type="application/json")


async def receive(request):
    """Baseline of a webhook call: read the body, answer 202."""
    body = await request.body()
    return JSONResponse({"accepted": 1, "bytes": len(body)}, status_code=202)


app = Starlette(routes=[Route("/bare/{item_id}", item), Route("/bare-bulk", bulk),
                        Route("/bare-post", receive, methods=["POST"])])
