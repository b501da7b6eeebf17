-- op-file's journal: which (session, formation id) lines each output file holds, and the
-- file length they add up to. After a crash, bytes past that length were written for
-- requests that never completed and are cut off; re-delivered requests whose line is
-- already journaled are not written twice.
CREATE TABLE file_journal (
    path        TEXT   NOT NULL,
    session_id  BIGINT NOT NULL,
    record_id   BIGINT NOT NULL,
    PRIMARY KEY (path, session_id, record_id)
) WITHOUT ROWID;

CREATE TABLE file_offset (
    path        TEXT   PRIMARY KEY NOT NULL,
    committed   BIGINT NOT NULL
);
