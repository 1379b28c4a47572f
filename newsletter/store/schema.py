"""The schema of each dialect, versioned. SQLite files start at version 1 (the first release) and are
upgraded step by step; a PostgreSQL database starts at version 2 (the first release that could use
one). Both dialects hold the same tables and columns in the same order (TABLES), so `db copy` moves
rows between them unchanged. Text columns are `COLLATE "C"` on PostgreSQL: timestamps are compared
and ordered as text, byte by byte, exactly as SQLite does."""

from __future__ import annotations

SCHEMA_VERSION = 7

TABLES: dict[str, tuple[str, ...]] = {
    "entries": ("id", "title_key", "title", "abstract", "authors", "author_count", "published", "upvotes",
                "comments", "organization", "links", "sources", "first_seen", "updated"),
    "subscribers": ("email", "name", "keywords", "exclude", "schedule", "timezone", "max_entries", "min_upvotes",
                    "send_empty", "added_at", "extra"),
    "subscriber_state": ("email", "unsubscribed_at", "hard_failures", "paused_reason", "paused_at", "bounced_at",
                         "paused_until"),
    "issues": ("id", "subscriber", "slot", "built_at", "status", "subject", "message_id", "message", "entry_count",
               "attempts", "last_error", "last_code", "next_attempt", "sent_at", "possible_duplicate", "claimed_by",
               "claim_until", "expires_at", "size", "dropped"),
    "issue_entries": ("issue_id", "subscriber", "entry_id", "position"),
    "issue_messages": ("issue_id", "message"),
    "sources": ("name", "etag", "last_modified", "last_fetch", "last_ok", "last_error", "entries"),
}

SQLITE_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    id TEXT PRIMARY KEY, title_key TEXT NOT NULL, title TEXT NOT NULL, abstract TEXT NOT NULL,
    authors TEXT NOT NULL, author_count INTEGER, published TEXT, upvotes INTEGER, comments INTEGER,
    organization TEXT, links TEXT NOT NULL, sources TEXT NOT NULL,
    first_seen TEXT NOT NULL, updated TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS entries_title_key ON entries(title_key);
CREATE INDEX IF NOT EXISTS entries_first_seen ON entries(first_seen);
CREATE TABLE IF NOT EXISTS issues (
    id TEXT PRIMARY KEY, subscriber TEXT NOT NULL, slot TEXT NOT NULL, built_at TEXT NOT NULL,
    status TEXT NOT NULL, subject TEXT, message_id TEXT, message BLOB, entry_count INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, last_code INTEGER,
    next_attempt TEXT, sent_at TEXT, possible_duplicate INTEGER NOT NULL DEFAULT 0,
    claimed_by TEXT, claim_until TEXT,
    UNIQUE (subscriber, slot));
CREATE INDEX IF NOT EXISTS issues_status ON issues(status);
CREATE TABLE IF NOT EXISTS issue_entries (
    issue_id TEXT NOT NULL, subscriber TEXT NOT NULL, entry_id TEXT NOT NULL,
    PRIMARY KEY (subscriber, entry_id, issue_id));
CREATE TABLE IF NOT EXISTS sources (
    name TEXT PRIMARY KEY, etag TEXT, last_modified TEXT, last_fetch TEXT, last_ok TEXT,
    last_error TEXT, entries INTEGER);
CREATE TABLE IF NOT EXISTS subscriber_state (
    email TEXT PRIMARY KEY, unsubscribed_at TEXT, hard_failures INTEGER NOT NULL DEFAULT 0,
    paused_reason TEXT);
"""
# Each step upgrades the schema by one version; a file is upgraded in one transaction.
SQLITE_UPGRADES: dict[int, str] = {
    2: """
CREATE TABLE subscribers (
    email TEXT PRIMARY KEY, name TEXT, keywords TEXT NOT NULL, exclude TEXT NOT NULL,
    schedule TEXT NOT NULL, timezone TEXT NOT NULL, max_entries INTEGER NOT NULL,
    min_upvotes INTEGER NOT NULL, send_empty INTEGER NOT NULL, added_at TEXT NOT NULL);
ALTER TABLE subscriber_state ADD COLUMN paused_at TEXT;
ALTER TABLE subscriber_state ADD COLUMN bounced_at TEXT;
ALTER TABLE issues ADD COLUMN expires_at TEXT;
ALTER TABLE issues ADD COLUMN size INTEGER;
ALTER TABLE issues ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0;
CREATE INDEX issues_pending ON issues(status, next_attempt) WHERE status = 'pending';
""",
    # 3: a pause with an end ("until a date"): when it is over, `end_pauses` lifts it.
    3: "ALTER TABLE subscriber_state ADD COLUMN paused_until TEXT;",
    # 4: what else a store-held subscriber's profile says (trending, updates, must_include, must_exclude),
    # as JSON: NULL when all are the defaults.
    4: "ALTER TABLE subscribers ADD COLUMN extra TEXT;",
    # 5: which issues carried a paper (`explain`) without reading every issue's papers
    5: "CREATE INDEX IF NOT EXISTS issue_entries_entry ON issue_entries(entry_id);",
    # 6: each paper's place in its issue (the archive shows them in the email's order; a row's
    # physical place moves on PostgreSQL when a paper takes its arXiv id). NULL: recorded before.
    6: "ALTER TABLE issue_entries ADD COLUMN position INTEGER;",
    # 7: a pending issue's message bytes in a table of their own, deleted once it is sent (or failed,
    # or expired). In the row they kept up to a page of its table each, which the row, shrunk
    # to ~300 bytes when sent, kept for ever: ~4 KB per delivered issue. Nothing is moved: an issue
    # recorded before (or by an earlier release still running) keeps its bytes in `issues.message`,
    # which is read when the new table has none (rows.MESSAGE) and emptied when it is no longer pending.
    # And the pending issues in the order a claim takes them (as PostgreSQL's `issues_pending`): a
    # claim reads the first few instead of sorting every pending issue (0.12 s a claim of 500 with
    # 100,000 pending, as after an SMTP outage).
    7: """
CREATE TABLE issue_messages (issue_id TEXT PRIMARY KEY, message BLOB NOT NULL);
CREATE INDEX issues_claim ON issues(slot, subscriber) WHERE status = 'pending';
""",
}

_T = 'TEXT COLLATE "C"'
POSTGRES_BASE_VERSION = 2
POSTGRES_V2 = f"""
CREATE TABLE meta (key {_T} PRIMARY KEY, value {_T} NOT NULL);
CREATE TABLE entries (
    id {_T} PRIMARY KEY, title_key {_T} NOT NULL, title {_T} NOT NULL, abstract {_T} NOT NULL,
    authors {_T} NOT NULL, author_count INTEGER, published {_T}, upvotes INTEGER, comments INTEGER,
    organization {_T}, links {_T} NOT NULL, sources {_T} NOT NULL,
    first_seen {_T} NOT NULL, updated {_T} NOT NULL);
CREATE INDEX entries_title_key ON entries(title_key);
CREATE INDEX entries_first_seen ON entries(first_seen);
CREATE TABLE subscribers (
    email {_T} PRIMARY KEY, name {_T}, keywords {_T} NOT NULL, exclude {_T} NOT NULL,
    schedule {_T} NOT NULL, timezone {_T} NOT NULL, max_entries INTEGER NOT NULL,
    min_upvotes INTEGER NOT NULL, send_empty INTEGER NOT NULL, added_at {_T} NOT NULL);
CREATE TABLE subscriber_state (
    email {_T} PRIMARY KEY, unsubscribed_at {_T}, hard_failures INTEGER NOT NULL DEFAULT 0,
    paused_reason {_T}, paused_at {_T}, bounced_at {_T});
CREATE TABLE issues (
    id {_T} PRIMARY KEY, subscriber {_T} NOT NULL, slot {_T} NOT NULL, built_at {_T} NOT NULL,
    status {_T} NOT NULL, subject {_T}, message_id {_T}, message BYTEA, entry_count INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_error {_T}, last_code INTEGER,
    next_attempt {_T}, sent_at {_T}, possible_duplicate INTEGER NOT NULL DEFAULT 0,
    claimed_by {_T}, claim_until {_T}, expires_at {_T}, size INTEGER, dropped INTEGER NOT NULL DEFAULT 0,
    UNIQUE (subscriber, slot));
CREATE INDEX issues_status ON issues(status);
CREATE INDEX issues_pending ON issues(slot, subscriber) WHERE status = 'pending';
CREATE INDEX issues_claimed ON issues(claimed_by) WHERE status = 'pending';
CREATE TABLE issue_entries (
    issue_id {_T} NOT NULL, subscriber {_T} NOT NULL, entry_id {_T} NOT NULL,
    PRIMARY KEY (subscriber, entry_id, issue_id));
CREATE INDEX issue_entries_entry ON issue_entries(entry_id);
CREATE TABLE sources (
    name {_T} PRIMARY KEY, etag {_T}, last_modified {_T}, last_fetch {_T}, last_ok {_T},
    last_error {_T}, entries INTEGER);
"""
# Version -> the statements that bring a PostgreSQL database from version-1 to it.
POSTGRES_UPGRADES: dict[int, str] = {
    3: f"ALTER TABLE subscriber_state ADD COLUMN paused_until {_T};",
    4: f"ALTER TABLE subscribers ADD COLUMN extra {_T};",
    5: "CREATE INDEX IF NOT EXISTS issue_entries_entry ON issue_entries(entry_id);",  # there from the start
    # 6: as SQLite's; a row's physical order (ctid) moves when it is updated (an entry merge), so the
    # rows already there get their place now, in the order they were written
    6: """
ALTER TABLE issue_entries ADD COLUMN position INTEGER;
UPDATE issue_entries ie SET position = o.n FROM (
    SELECT ctid AS row, row_number() OVER (PARTITION BY issue_id ORDER BY ctid) - 1 AS n FROM issue_entries) o
WHERE ie.ctid = o.row;
""",
    7: f"CREATE TABLE issue_messages (issue_id {_T} PRIMARY KEY, message BYTEA NOT NULL);",
}


def statements(script: str) -> list[str]:
    return [s for s in script.split(";") if s.strip()]
