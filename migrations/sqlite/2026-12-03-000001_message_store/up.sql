-- The message store: one row per request or reply, with the IRIS header fields and the
-- JSON body. Ids are allocated by the production in causal order (see interop::store).
CREATE TABLE message (
    id          INTEGER PRIMARY KEY,
    session_id  INTEGER NOT NULL,
    parent_id   INTEGER,            -- request: the request its sender was handling; reply: the request it answers
    source      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    type_name   TEXT    NOT NULL,
    kind        TEXT    NOT NULL,   -- request | reply
    status      TEXT    NOT NULL,   -- queued | delivered | completed | error | discarded
    is_error    BOOLEAN NOT NULL DEFAULT 0,
    error_text  TEXT,
    created     TEXT    NOT NULL,   -- RFC 3339, UTC, microseconds
    processed   TEXT,
    body        TEXT    NOT NULL,
    session_key TEXT                -- a service's idempotency key for the input that started the session
);
CREATE INDEX message_session ON message (session_id, id);
CREATE UNIQUE INDEX message_session_key ON message (session_key) WHERE session_key IS NOT NULL;

-- The event log (IRIS Ens.Util.Log): lifecycle, errors, alerts and trace entries.
CREATE TABLE event_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time        TEXT    NOT NULL,
    level       TEXT    NOT NULL,
    item        TEXT,
    session_id  INTEGER,
    text        TEXT    NOT NULL
);
CREATE INDEX event_log_session ON event_log (session_id) WHERE session_id IS NOT NULL;
