-- `training.id` as the table's rowid: `BIGINT PRIMARY KEY` kept a second B-tree (a
-- unique index beside the rowid table) that every upsert had to update as well.
CREATE TABLE training_by_rowid (
    id    INTEGER PRIMARY KEY NOT NULL,
    name  TEXT    NOT NULL,
    room  TEXT    NOT NULL
);
INSERT INTO training_by_rowid (id, name, room) SELECT id, name, room FROM training;
DROP TABLE training;
ALTER TABLE training_by_rowid RENAME TO training;
