-- The resource catalog (issue 7): pycsw's repository table in schema `catalog`, and Lantu's bookkeeping for
-- record generation, harvesting and federation.

-- A records table with the columns pycsw 2.6.2 maps (pycsw.core.admin.setup_db writes the same columns but
-- cannot qualify a schema on PostgreSQL), plus a native PostGIS geometry kept in step with wkt_geometry by a
-- trigger, so that pycsw's PostGIS path ("postgresql+postgis+native") runs spatial filters with an index.
-- No `fts_gin_idx`: pycsw then searches AnyText with ILIKE, which finds Chinese substrings (PostgreSQL's
-- text search configurations do not segment Chinese). A function so that tests can make a second table
-- (the CITE records) with the very same shape.
CREATE FUNCTION catalog.create_records_table(name text) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    col text;
BEGIN
    EXECUTE format($ddl$
        CREATE TABLE catalog.%1$I (
            identifier text PRIMARY KEY,
            typename text NOT NULL DEFAULT 'csw:Record',
            schema text NOT NULL DEFAULT 'http://www.opengis.net/cat/csw/2.0.2',
            mdsource text NOT NULL DEFAULT 'local',
            insert_date text NOT NULL,
            xml text NOT NULL,
            anytext text NOT NULL,
            language text, type text, title text, title_alternate text, abstract text, keywords text,
            keywordstype text, parentidentifier text, relation text, time_begin text, time_end text,
            topicategory text, resourcelanguage text, creator text, publisher text, contributor text,
            organization text, securityconstraints text, accessconstraints text, otherconstraints text,
            date text, date_revision text, date_creation text, date_publication text, date_modified text,
            format text, source text, crs text, geodescode text, denominator text, distancevalue text,
            distanceuom text, wkt_geometry text, servicetype text, servicetypeversion text, operation text,
            couplingtype text, operateson text, operatesonidentifier text, operatesoname text, degree text,
            classification text, conditionapplyingtoaccessanduse text, lineage text, responsiblepartyrole text,
            specificationtitle text, specificationdate text, specificationdatetype text, links text,
            wkb_geometry geometry(Geometry, 4326)
        )$ddl$, name);
    FOREACH col IN ARRAY ARRAY['typename', 'schema', 'mdsource', 'insert_date', 'type', 'title', 'date_modified',
                               'servicetype', 'parentidentifier', 'time_begin', 'time_end'] LOOP
        EXECUTE format('CREATE INDEX %I ON catalog.%I (%I)', name || '_' || col, name, col);
    END LOOP;
    EXECUTE format('CREATE INDEX %I ON catalog.%I USING gist (wkb_geometry)', name || '_geom', name);
    EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON catalog.%I FOR EACH ROW '
                   'EXECUTE FUNCTION catalog.records_geometry()', name || '_geometry', name);
END
$fn$;

-- wkt_geometry (what pycsw writes) → wkb_geometry (what its native PostGIS queries read); lon/lat, 4326.
-- A record without a bounding box gets an empty geometry, not NULL: pycsw's native PostGIS filters are
-- plain ST_ predicates, and under ogc:Not a NULL would drop the record (NOT NULL is NULL) where CSW wants
-- it matched (the CITE suite's Not/BBOX case); an empty geometry intersects nothing, so NOT gives true.
CREATE FUNCTION catalog.records_geometry() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.wkt_geometry IS NULL OR NEW.wkt_geometry = '' THEN
        NEW.wkb_geometry := ST_GeomFromText('GEOMETRYCOLLECTION EMPTY', 4326);
    ELSE
        NEW.wkb_geometry := ST_GeomFromText(NEW.wkt_geometry, 4326);
    END IF;
    RETURN NEW;
END
$fn$;

SELECT catalog.create_records_table('records');

-- Record generation follows lantu.change_log: the last change id folded into the records.
CREATE TABLE catalog.state (
    key   text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO catalog.state (key, value) VALUES ('change_log_position', -1);

-- Harvest sources (remote catalogs and services, peers of the federation) and their progress. A run
-- records each page as it commits it, so an interrupted run resumes after its last committed page.
CREATE TABLE catalog.harvest_sources (
    url             text PRIMARY KEY,
    type            text        NOT NULL CHECK (type IN ('csw', 'wms', 'wfs', 'wmts', 'ogcapi')),
    peer            text,                        -- the federation peer's name, when this source is one
    last_started    timestamptz,
    last_completed  timestamptz,
    high_water      text,                        -- newest modification date seen in the last complete run
    resume_position integer,                     -- next startPosition of an interrupted run (null: none)
    run_started     timestamptz,                 -- start of the run that resume_position belongs to
    last_report     jsonb       NOT NULL DEFAULT '{}'::jsonb
);

-- Which records came from which source, with the modification stamp last stored (incremental runs and
-- removed counts).
CREATE TABLE catalog.harvest_items (
    source      text NOT NULL REFERENCES catalog.harvest_sources (url) ON DELETE CASCADE,
    identifier  text NOT NULL,
    modified    text,
    seen_run    timestamptz NOT NULL,
    PRIMARY KEY (source, identifier)
);

-- Distributed searches this catalog has already answered (the requestId Lantu sets when it forwards one):
-- a search that comes back round a loop of peers is answered with no records and not forwarded again.
-- Unlogged: losing it in a crash only lets a loop run until hopCount ends it.
CREATE UNLOGGED TABLE catalog.searches_seen (
    search_id text PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now()
);
