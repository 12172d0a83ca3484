-- Lantu core schemas and the change log. Applied once, in a transaction, recorded in lantu.schema_migrations.
CREATE SCHEMA IF NOT EXISTS lantu;
CREATE SCHEMA IF NOT EXISTS blueprint;
CREATE SCHEMA IF NOT EXISTS catalog;

-- One row per load or edit of a layer: later issues read it to invalidate tile caches (by bbox) and to
-- update catalog records.
CREATE TABLE lantu.change_log (
    id          bigserial PRIMARY KEY,
    layer       text        NOT NULL,
    operation   text        NOT NULL CHECK (operation IN ('replace', 'append', 'edit', 'delete', 'demo')),
    inserted    integer     NOT NULL DEFAULT 0,
    deleted     integer     NOT NULL DEFAULT 0,
    updated     integer     NOT NULL DEFAULT 0,
    bbox        geometry(Polygon, 4490),
    at          timestamptz NOT NULL DEFAULT now(),
    who         text        NOT NULL,
    source      text,
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX change_log_layer_at ON lantu.change_log (layer, at DESC);
