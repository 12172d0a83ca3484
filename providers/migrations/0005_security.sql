-- Access control (accounts, API keys), the audit of edits and the access log.
CREATE TABLE lantu.accounts (
    id          bigserial   PRIMARY KEY,
    name        text        NOT NULL UNIQUE,          -- e.g. dept-natural-resources
    title       text        NOT NULL DEFAULT '',      -- 中文名称 of the department or person
    roles       text[]      NOT NULL DEFAULT '{}',
    attributes  jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- row-filter values, e.g. {"xzqdm": "430121104000"}
    created     timestamptz NOT NULL DEFAULT now(),
    disabled    boolean     NOT NULL DEFAULT false
);

-- Keys are shown once at creation; only their SHA-256 is stored (they are 256-bit random, so a slow hash
-- adds nothing). `prefix` identifies a key in listings and logs without revealing it.
CREATE TABLE lantu.api_keys (
    id          bigserial   PRIMARY KEY,
    account_id  bigint      NOT NULL REFERENCES lantu.accounts (id) ON DELETE CASCADE,
    prefix      text        NOT NULL UNIQUE,
    key_hash    bytea       NOT NULL UNIQUE,
    created     timestamptz NOT NULL DEFAULT now(),
    expires     timestamptz,
    revoked     timestamptz
);

-- Every edit through OGC API – Features Part 4 (and other writes that name a feature), before and after.
CREATE TABLE lantu.audit_log (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    who         text        NOT NULL,
    layer       text        NOT NULL,
    operation   text        NOT NULL CHECK (operation IN ('create', 'replace', 'update', 'delete')),
    bsm         text,
    fid         bigint,
    before      jsonb,
    after       jsonb,
    change_id   bigint
);
CREATE INDEX audit_log_layer_at ON lantu.audit_log (layer, at DESC);

-- Who read which layer through which protocol (written in batches by each server process).
CREATE TABLE lantu.access_log (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL,
    who         text        NOT NULL,
    protocol    text        NOT NULL,
    action      text        NOT NULL,
    layers      text[]      NOT NULL DEFAULT '{}',
    status      smallint    NOT NULL,
    path        text        NOT NULL
);
CREATE INDEX access_log_at ON lantu.access_log (at DESC);
CREATE INDEX access_log_who_at ON lantu.access_log (who, at DESC);
