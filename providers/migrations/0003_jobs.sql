-- OGC API – Processes jobs. Durable: a job is a row from the moment it is accepted; `lantu worker`
-- processes claim rows with FOR UPDATE SKIP LOCKED and hold a lease they renew (heartbeat). A running job
-- whose lease ran out (its worker died) is claimed again until max_attempts, then marked failed.
CREATE TABLE lantu.jobs (
    id              uuid        PRIMARY KEY,
    process_id      text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('accepted', 'running', 'successful', 'failed',
                                                           'dismissed')),
    mode            text        NOT NULL CHECK (mode IN ('sync', 'async')),
    inputs          jsonb       NOT NULL,
    outputs_wanted  jsonb,                       -- the `outputs` of the execute request (null: all)
    response        text        NOT NULL DEFAULT 'raw' CHECK (response IN ('raw', 'document')),
    message         text        NOT NULL DEFAULT '',
    progress        smallint    NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    attempts        integer     NOT NULL DEFAULT 0,
    max_attempts    integer     NOT NULL DEFAULT 3,
    worker          text,                        -- host:pid of the worker holding the lease
    lease_until     timestamptz,
    created         timestamptz NOT NULL DEFAULT now(),
    started         timestamptz,
    updated         timestamptz NOT NULL DEFAULT now(),
    finished        timestamptz,
    who             text        NOT NULL DEFAULT 'anonymous',
    error           jsonb                        -- OGC exception of a failed job
);
CREATE INDEX jobs_queue ON lantu.jobs (created) WHERE status IN ('accepted', 'running');
CREATE INDEX jobs_created ON lantu.jobs (created DESC, id);

-- One row per output of a successful job (results live in the database so that any server can answer
-- for a job any worker ran).
CREATE TABLE lantu.job_results (
    job_id      uuid    NOT NULL REFERENCES lantu.jobs (id) ON DELETE CASCADE,
    output_id   text    NOT NULL,
    media_type  text    NOT NULL,
    body        bytea   NOT NULL,
    PRIMARY KEY (job_id, output_id)
);
