-- Reverts 0001_app_schema. Leaves the cluster-wide roles app_user and app_client in place
-- (other databases may use them); drop them by hand if the cluster no longer needs them.
DROP FUNCTION app.current_client_id();
DROP SCHEMA app;
