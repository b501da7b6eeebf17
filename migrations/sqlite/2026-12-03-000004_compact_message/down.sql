CREATE TABLE message_text AS SELECT * FROM message;
DROP VIEW message;
DROP TABLE message_data;
DROP TABLE message_name;
CREATE TABLE message (
    id          INTEGER PRIMARY KEY,
    session_id  INTEGER NOT NULL,
    parent_id   INTEGER,
    source      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    type_name   TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    is_error    BOOLEAN NOT NULL DEFAULT 0,
    error_text  TEXT,
    created     TEXT    NOT NULL,
    processed   TEXT,
    body        TEXT    NOT NULL,
    session_key TEXT
);
INSERT INTO message SELECT * FROM message_text;
DROP TABLE message_text;
CREATE INDEX message_session ON message (session_id, id);
CREATE UNIQUE INDEX message_session_key ON message (session_key) WHERE session_key IS NOT NULL;
