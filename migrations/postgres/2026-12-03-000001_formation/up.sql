-- The external database's table written by op-postgres (the tutorial's DemoData table).
CREATE TABLE IF NOT EXISTS public.formation (
    id    BIGINT PRIMARY KEY,
    nom   TEXT NOT NULL,
    salle TEXT NOT NULL
);
