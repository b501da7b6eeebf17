-- The message store, compact: item and type names interned in message_name, kind and
-- status as small integers, times as microseconds since the Unix epoch (UTC). Rows are
-- about 40% smaller, which is most of what an ingest costs the store's writer
-- (BENCHMARKS.md). `message` stays, as a view with the same columns as before, for the
-- production's queries and for operators reading the database.
CREATE TABLE message_name (
    id    INTEGER PRIMARY KEY,
    name  TEXT NOT NULL UNIQUE
);

CREATE TABLE message_data (
    id          INTEGER PRIMARY KEY,
    session_id  INTEGER NOT NULL,
    parent_id   INTEGER,
    source      INTEGER NOT NULL,   -- message_name.id
    target      INTEGER NOT NULL,   -- message_name.id
    type_name   INTEGER NOT NULL,   -- message_name.id
    kind        INTEGER NOT NULL,   -- 0 request, 1 reply
    status      INTEGER NOT NULL,   -- 0 queued, 1 delivered, 2 completed, 3 error, 4 discarded
    is_error    BOOLEAN NOT NULL DEFAULT 0,
    error_text  TEXT,
    created     INTEGER NOT NULL,   -- microseconds since 1970-01-01T00:00:00Z
    processed   INTEGER,
    body        TEXT    NOT NULL,
    session_key TEXT
);

INSERT INTO message_name (name)
    SELECT source FROM message UNION SELECT target FROM message UNION SELECT type_name FROM message;

INSERT INTO message_data
SELECT m.id, m.session_id, m.parent_id,
       (SELECT id FROM message_name WHERE name = m.source),
       (SELECT id FROM message_name WHERE name = m.target),
       (SELECT id FROM message_name WHERE name = m.type_name),
       CASE m.kind WHEN 'request' THEN 0 ELSE 1 END,
       CASE m.status WHEN 'queued' THEN 0 WHEN 'delivered' THEN 1 WHEN 'completed' THEN 2
                     WHEN 'error' THEN 3 ELSE 4 END,
       m.is_error, m.error_text,
       CAST(strftime('%s', substr(m.created, 1, 19)) AS INTEGER) * 1000000
           + CAST(substr(m.created, 21, 6) AS INTEGER),
       CASE WHEN m.processed IS NULL THEN NULL ELSE
           CAST(strftime('%s', substr(m.processed, 1, 19)) AS INTEGER) * 1000000
           + CAST(substr(m.processed, 21, 6) AS INTEGER) END,
       m.body, m.session_key
FROM message m;

DROP TABLE message;
CREATE INDEX message_data_session ON message_data (session_id, id);
CREATE UNIQUE INDEX message_data_session_key ON message_data (session_key)
    WHERE session_key IS NOT NULL;

CREATE VIEW message AS
SELECT m.id, m.session_id, m.parent_id,
       (SELECT name FROM message_name WHERE id = m.source) AS source,
       (SELECT name FROM message_name WHERE id = m.target) AS target,
       (SELECT name FROM message_name WHERE id = m.type_name) AS type_name,
       CASE m.kind WHEN 0 THEN 'request' ELSE 'reply' END AS kind,
       CASE m.status WHEN 0 THEN 'queued' WHEN 1 THEN 'delivered' WHEN 2 THEN 'completed'
                     WHEN 3 THEN 'error' ELSE 'discarded' END AS status,
       m.is_error, m.error_text,
       strftime('%Y-%m-%dT%H:%M:%S', m.created / 1000000, 'unixepoch')
           || printf('.%06dZ', m.created % 1000000) AS created,
       CASE WHEN m.processed IS NULL THEN NULL ELSE
           strftime('%Y-%m-%dT%H:%M:%S', m.processed / 1000000, 'unixepoch')
           || printf('.%06dZ', m.processed % 1000000) END AS processed,
       m.body, m.session_key
FROM message_data m;
