CREATE TABLE training_by_index (
    id    BIGINT PRIMARY KEY NOT NULL,
    name  TEXT   NOT NULL,
    room  TEXT   NOT NULL
);
INSERT INTO training_by_index (id, name, room) SELECT id, name, room FROM training;
DROP TABLE training;
ALTER TABLE training_by_index RENAME TO training;
