-- ddl_event_trigger.sql — pgsov's server-side DDL guard: refuses schema changes unless the
-- session's login role is a migration role (or a superuser). It catches what a proxy cannot
-- see: DDL run inside DO blocks, functions, procedures and triggers, and DDL from clients that
-- bypass the proxy.
--
-- Install (idempotent; run as a superuser in every database the proxy guards):
--     psql "host=... dbname=app_db user=postgres" -v ON_ERROR_STOP=1 -f rules/ddl_event_trigger.sql
-- Allow a role (or members of a group role) to run DDL:
--     INSERT INTO pgsov.migration_roles (role) VALUES ('migrator') ON CONFLICT DO NOTHING;
-- Check:
--     SELECT evtname, evtenabled FROM pg_event_trigger WHERE evtname = 'pgsov_ddl_guard';
--
-- The role list is a table, not a setting: a custom setting such as pgsov.migration_roles can
-- be changed by any session with SET, so it could not protect anything.

BEGIN;

CREATE SCHEMA IF NOT EXISTS pgsov;
REVOKE CREATE ON SCHEMA pgsov FROM PUBLIC;
GRANT USAGE ON SCHEMA pgsov TO PUBLIC;

CREATE TABLE IF NOT EXISTS pgsov.migration_roles (
    role     name        PRIMARY KEY,
    added_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgsov.migration_roles IS
    'pgsov: login roles (or group roles whose members) may run DDL; read by pgsov.ddl_guard()';
REVOKE ALL ON pgsov.migration_roles FROM PUBLIC;
GRANT SELECT ON pgsov.migration_roles TO PUBLIC;

CREATE OR REPLACE FUNCTION pgsov.ddl_guard() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog
AS $guard$
DECLARE
    who name := session_user;
BEGIN
    -- Superusers may always run DDL: they install this trigger and could disable it anyway.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = who AND r.rolsuper) THEN
        RETURN;
    END IF;
    -- A listed role, or a member of a listed group role (roles that no longer exist are ignored).
    IF EXISTS (SELECT 1
                 FROM pgsov.migration_roles m
                 JOIN pg_catalog.pg_roles r ON r.rolname = m.role
                WHERE pg_catalog.pg_has_role(who, r.oid, 'MEMBER')) THEN
        RETURN;
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = '42501',
        MESSAGE = pg_catalog.format('pgsov: DDL refused: %s by role %I in database %I',
                                    tg_tag, who, pg_catalog.current_database()),
        DETAIL  = 'Schema changes in this database must run as a migration role; '
                  'the pgsov_ddl_guard event trigger refuses them for other roles, '
                  'including inside DO blocks and functions.',
        HINT    = pg_catalog.format('Run the change as a migration (pgsov migrate), or as a '
                  'superuser: INSERT INTO pgsov.migration_roles (role) VALUES (%L);', who);
END
$guard$;

COMMENT ON FUNCTION pgsov.ddl_guard() IS
    'pgsov: refuses DDL unless session_user is a superuser or listed in pgsov.migration_roles';

DROP EVENT TRIGGER IF EXISTS pgsov_ddl_guard;
CREATE EVENT TRIGGER pgsov_ddl_guard ON ddl_command_start
    EXECUTE FUNCTION pgsov.ddl_guard();

COMMIT;
