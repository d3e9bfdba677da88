-- 0001_app_schema: the schema that holds the credit-operations tables, and the roles that
-- the policies in later migrations name.
--
-- Roles are cluster-wide, so they are created only when missing and never dropped by a
-- down migration (another database on the same cluster may use them):
--   app_user    NOLOGIN group role of the application backend: reads and writes every row.
--               Grant it to the real login role: GRANT app_user TO my_backend_login;
--   app_client  NOLOGIN group role of a customer-facing session: sees only the rows of the
--               client named by the setting app.client_id (unset: sees nothing).
-- Creating roles needs CREATEROLE (or superuser); on a cluster where the migrating role lacks
-- it, create the two roles once by hand and this migration skips them.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_user') THEN
        CREATE ROLE app_user NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_client') THEN
        CREATE ROLE app_client NOLOGIN;
    END IF;
END
$$;

CREATE SCHEMA app;
COMMENT ON SCHEMA app IS 'credit operations: clients, proposals, contracts, installments, payments';
GRANT USAGE ON SCHEMA app TO app_user, app_client;

-- The client a customer-facing session acts for; NULL (nothing visible) when unset.
CREATE FUNCTION app.current_client_id() RETURNS bigint
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('app.client_id', true), '')::bigint $$;
