-- 规划核心指标 (issue 11). Statistics the indicators need (population by administrative unit and year), the
-- plan's targets per indicator and unit, and the yearly snapshots served as the non-spatial OGC API –
-- Features collection `core_indicators`.
CREATE TABLE lantu.statistics (
    xzqdm       text             NOT NULL,   -- 6-digit county or 12-digit town code
    year        integer          NOT NULL CHECK (year BETWEEN 1949 AND 2200),
    item        text             NOT NULL,   -- e.g. resident_population, urban_population
    value       double precision NOT NULL,
    unit        text             NOT NULL DEFAULT '',
    source      text             NOT NULL DEFAULT '',
    PRIMARY KEY (xzqdm, year, item)
);

CREATE TABLE lantu.indicator_targets (
    indicator   text             NOT NULL,   -- id in config/indicators.yaml
    xzqdm       text             NOT NULL,
    target      double precision NOT NULL,
    source      text             NOT NULL DEFAULT '',
    PRIMARY KEY (indicator, xzqdm)
);

CREATE TABLE lantu.indicator_snapshots (
    fid             bigserial        PRIMARY KEY,
    indicator       text             NOT NULL,
    name_zh         text             NOT NULL,
    year            integer          NOT NULL,
    xzqdm           text             NOT NULL,
    xzqmc           text             NOT NULL,
    unit            text             NOT NULL,
    nature          text             NOT NULL,   -- 约束性 / 预期性
    value           double precision,
    value_planar    double precision,            -- areas: planar (GK zone) value in the indicator's unit
    target          double precision,
    gap             double precision,
    status          text,                        -- 达标 / 预警 / 未达标, null without a target
    previous        double precision,            -- the previous snapshot year's value, when there is one
    change          double precision,            -- value − previous
    computed_at     timestamptz      NOT NULL DEFAULT now(),
    UNIQUE (indicator, year, xzqdm)
);
CREATE INDEX indicator_snapshots_year ON lantu.indicator_snapshots (year, xzqdm);
