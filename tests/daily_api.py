"""A loopback emulation of the Hugging Face daily-papers API (`GET /api/daily_papers`), for tests.

As the API behaves (shared/data/hf_daily_papers/SCHEMA.md): `date=YYYY-MM-DD` selects a day, `p` the
page and `limit` its size (over 100 is refused, as is a future date); a day without a list (a weekend)
answers `[]`; each answer has an ETag and honours If-None-Match. `throttle` makes chosen requests
answer 429 with a Retry-After once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date

from werkzeug import Request, Response


@dataclass
class DailyApi:
    today: date
    days: dict[date, list[dict]] = field(default_factory=dict)  # type: ignore[type-arg]
    throttle: set[tuple[str, int]] = field(default_factory=set)  # (date, page) answered 429 once
    retry_after: str = "1"
    log: list[tuple[str, int, int]] = field(default_factory=list)  # (date, page, status) per request

    def __call__(self, request: Request) -> Response:
        day_text = request.args.get("date", "")
        page = int(request.args.get("p", "0"))
        limit = int(request.args.get("limit", "50"))

        def answer(status: int, body: object = None, **headers: str) -> Response:
            self.log.append((day_text, page, status))
            data = b"" if body is None else json.dumps(body).encode()
            return Response(data, status=status, headers=headers, content_type="application/json")

        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            return answer(400, {"error": "Invalid date"})
        if day > self.today:
            return answer(400, {"error": "date is in the future"})
        if limit > 100:
            return answer(400, {"error": "limit must be <= 100"})
        if (day_text, page) in self.throttle:
            self.throttle.discard((day_text, page))
            return answer(429, {"error": "Too Many Requests"}, **{"Retry-After": self.retry_after,
                                                                 "RateLimit": '"api";r=0;t=1'})
        items = self.days.get(day, [])[page * limit:(page + 1) * limit]
        etag = '"' + hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:16] + '"'
        if request.headers.get("If-None-Match") == etag:
            return answer(304)
        return answer(200, items, ETag=etag, RateLimit='"api";r=499;t=300')

    def fetched(self, status: int | None = None) -> list[tuple[str, int]]:
        return [(d, p) for d, p, s in self.log if status is None or s == status]
