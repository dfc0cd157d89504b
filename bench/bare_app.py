"""The baseline of bench/api.py: a bare Starlette JSON endpoint under the same uvicorn,
answering a body the size and shape of one item valuation, with no database behind it."""

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

BODY = {
    "item_id": "7804", "fair_value": 4210.5, "currency": "ETH", "band": {"p10": 3100.0, "p90": 5600.0},
    "signal": "HOLD", "last_sale": {"price": 4200.0, "timestamp": "2021-03-11T00:00:00Z"},
    "snapshot": {"id": 1, "as_of": "2021-12-31T00:00:00Z", "published_at": "2021-12-31T00:00:01Z"},
    "model_version": 1, "collection": "cryptopunks", "type": "Alien",
    "attributes": {"accessory_count": 4, "accessories": ["Cap Forward", "Pipe", "Small Shades"]},
}


async def item(request):
    return JSONResponse(BODY)


async def receive(request):
    """Baseline of a webhook call: read the body, answer 202."""
    body = await request.body()
    return JSONResponse({"accepted": 1, "bytes": len(body)}, status_code=202)


app = Starlette(routes=[Route("/bare/{item_id}", item), Route("/bare-post", receive, methods=["POST"])])
