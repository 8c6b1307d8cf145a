"""Three real uvicorn processes of a FastAPI app sharing one Redis behave as one cache."""

from __future__ import annotations

from pathlib import Path

from support.http_fleet import check_fleet

HERE = Path(__file__).parent


async def test_three_instances_compute_once_and_share_etags(redis_url: str) -> None:
    """150 concurrent requests over 3 instances run the endpoint once; A's ETag gives 304 on B."""
    await check_fleet("fastapi_fleet_app:app", [str(HERE), str(HERE.parent)], redis_url)
