-- The embedded database's business table (the tutorial's IRIS table), owned by op-iris.
CREATE TABLE training (
    id    BIGINT PRIMARY KEY NOT NULL,
    name  TEXT   NOT NULL,
    room  TEXT   NOT NULL
);
