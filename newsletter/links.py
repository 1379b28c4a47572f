"""The signed links a digest and the readers' pages carry: confirm a sign-up, manage a profile,
rate a paper, view an issue on the web, a private Atom feed. Pure: base URL, subject and secret in,
URL out; `newsletter/web` checks them with `tokens.check` for the same purpose.

A digest's rating links share one signed prefix per issue (`rating`); `feedback` signs one paper
alone (the preference centre's and the web view's links).

Manage and feed links carry the subscriber's link version: rotating it (from the preference
centre) revokes every earlier one. Issue and rating links never expire, like the mails they are in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from newsletter.tokens import Purpose, make

MORE, LESS = 1, -1


def _subject(*parts: str) -> str:
    return "\n".join(parts)


def split(subject: str, n: int) -> list[str] | None:
    """The parts of a token subject made by this module, or None if it has not `n` of them."""
    parts = subject.split("\n")
    return parts if len(parts) == n else None


@dataclass(frozen=True)
class Links:
    """Makes the links of one deployment: `base_url` without a trailing slash."""

    base_url: str
    secret: str

    def confirm(self, email: str, nonce: str, expires: datetime) -> str:
        token = make(Purpose.CONFIRM, _subject(email, nonce), self.secret, expires=expires)
        return f"{self.base_url}/confirm/{token}"

    def manage_token(self, email: str, version: int) -> str:
        return make(Purpose.MANAGE, _subject(str(version), email), self.secret)

    def manage(self, email: str, version: int) -> str:
        return f"{self.base_url}/manage/{self.manage_token(email, version)}"

    def feed(self, email: str, version: int) -> str:
        return f"{self.base_url}/feed/{make(Purpose.FEED, _subject(str(version), email), self.secret)}"

    def view(self, issue_id: str) -> str:
        return f"{self.base_url}/view/{make(Purpose.VIEW, issue_id, self.secret)}"

    def rating(self, email: str, issue_id: str) -> str:
        """The base of every "more / less like this" link of one issue: a paper's link is
        `{rating}/more/{entry id}` (or `/less/`), so one signature serves all the papers of the issue
        and a card is the same for every subscriber but for this prefix. The service accepts only
        papers that issue carried."""
        return f"{self.base_url}/rate/{make(Purpose.FEEDBACK, _subject(email, issue_id), self.secret)}"

    def feedback(self, email: str, entry_id: str, verdict: int, issue_id: str = "") -> str:
        token = make(Purpose.FEEDBACK, _subject(str(verdict), email, entry_id, issue_id), self.secret)
        return f"{self.base_url}/feedback/{token}"
